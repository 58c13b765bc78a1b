"""Synthetic food-delivery orders with labelled fraud patterns and fraud actors."""

from fraudstream.generator.orders import BEHAVIORS, PATTERNS, OrderGenerator, generator_from_settings

__all__ = ["BEHAVIORS", "PATTERNS", "OrderGenerator", "generator_from_settings"]
