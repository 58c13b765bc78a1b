"""Where the cities are: coordinates shared by the generator and the behavioural features.

One table, so the generator's distances and the features' distances agree; the JVM's copy of
the features receives it from here (`fraudstream.features.spec.FeatureSpec.cities`).
"""

from __future__ import annotations

import math

# city -> (latitude, longitude), degrees
CITY_COORDS: dict[str, tuple[float, float]] = {
    "Mumbai": (19.08, 72.88),
    "Delhi": (28.61, 77.21),
    "Bengaluru": (12.97, 77.59),
    "Hyderabad": (17.39, 78.49),
    "Chennai": (13.08, 80.27),
    "Kolkata": (22.57, 88.36),
    "Pune": (18.52, 73.86),
    "Ahmedabad": (23.02, 72.57),
    "Jaipur": (26.91, 75.79),
    "Lucknow": (26.85, 80.95),
    "Chandigarh": (30.73, 76.78),
    "Kochi": (9.93, 76.27),
    "Indore": (22.72, 75.86),
    "Bhopal": (23.26, 77.41),
}

EARTH_RADIUS_KM = 6371.0


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def distance_table(coords: dict[str, tuple[float, float]]) -> dict[str, dict[str, int]]:
    """Whole kilometres between every pair of cities, computed once here and handed to every
    engine as data, so no two languages' sine functions have to agree to the last bit."""
    return {a: {b: round(haversine_km(ca, cb)) for b, cb in coords.items()} for a, ca in coords.items()}
