"""The data contract: what an order looks like and what a rejected record looks like."""

from fraudstream.events.model import DeadLetter, Order
from fraudstream.events.parse import ParseLimits, parse_record

__all__ = ["DeadLetter", "Order", "ParseLimits", "parse_record"]
