"""Which features there are, in the order a model reads them, and the bounds on their state.

The definitions are in `docs/model.md` ("Features"); `FeatureSpec` carries every number they
depend on, so the Python reference and the JVM's copy are configured from one object
(`FeatureSpec.to_json` is what the JVM receives).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import orjson

from fraudstream.config import FeatureSettings
from fraudstream.events.geo import CITY_COORDS, distance_table

# The order of the model's input vector. A model file names these; one whose list differs
# is refused at start-up (fraudstream.model.file).
FEATURES: tuple[str, ...] = (
    "amount",  # this order's amount (INR)
    "prior_orders",  # the user's orders before this one in the kept history
    "amount_to_usual",  # amount / max(the user's mean amount, 1) (1 with no history)
    "amount_z",  # (amount - mean) / (std + 0.1 * mean + 1) (0 with no history)
    "account_age_h",  # hours since the user's first order in the kept history (0 for the first)
    "since_prev_h",  # hours since the user's previous order (history_ms in hours for the first)
    "orders_last_hour",  # the user's orders in the hour before this one
    "device_orders",  # the user's earlier orders from this device (0 = a device new to them)
    "city_orders",  # the user's earlier orders from this city (0 = a city new to them)
    "km_from_usual",  # km from the user's usual city (0 with no history, -1 if a city is unknown)
    "device_users_24h",  # other users seen on this device in the 24 hours before this order
)

HOUR_MS = 3_600_000
_DEFAULTS = FeatureSettings()  # the one source of the bounds' default numbers


@dataclass(frozen=True)
class FeatureSpec:
    """The bounds of the features' state, and the city distances (whole km)."""

    history_ms: int = _DEFAULTS.history_ms
    recent_ms: int = _DEFAULTS.recent_ms
    recent_max: int = _DEFAULTS.recent_max
    max_devices: int = _DEFAULTS.max_devices
    max_cities: int = _DEFAULTS.max_cities
    device_window_ms: int = _DEFAULTS.device_window_ms
    device_users_max: int = _DEFAULTS.device_users_max
    distances: dict[str, dict[str, int]] = field(default_factory=lambda: distance_table(CITY_COORDS))

    @classmethod
    def from_settings(cls, cfg: FeatureSettings) -> FeatureSpec:
        return cls(**cfg.model_dump())

    def bounds(self) -> dict[str, int]:
        """The state bounds by setting name (features.*), as a model file records them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "distances"}

    def to_json(self) -> str:
        """Everything the JVM's copy of the features needs, as one JSON object."""
        return orjson.dumps({"features": list(FEATURES), **self.bounds(), "distances": self.distances}).decode()
