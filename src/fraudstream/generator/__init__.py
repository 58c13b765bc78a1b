"""Synthetic food-delivery orders with labelled fraud patterns and fraud actors."""

from fraudstream.generator.orders import (
    BEHAVIORS,
    LIVE_START,
    PATTERNS,
    OrderGenerator,
    generator_from_settings,
    is_live,
    live_users,
)

__all__ = ["BEHAVIORS", "LIVE_START", "PATTERNS", "OrderGenerator", "generator_from_settings", "is_live", "live_users"]
