"""Synthetic food-delivery orders with labelled fraud patterns."""

from fraudstream.generator.orders import BEHAVIORS, OrderGenerator, generator_from_settings

__all__ = ["BEHAVIORS", "OrderGenerator", "generator_from_settings"]
