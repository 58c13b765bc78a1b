"""The dashboard process's own Prometheus metrics (one registry per app), served at /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class DashboardMetrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "fraudstream_dashboard_requests",
            "HTTP requests served, by route and status code",
            ["route", "code"],
            registry=r,
        )
        self.sse_clients = Gauge("fraudstream_dashboard_sse_clients", "Pages connected to the live feed", registry=r)
        self.pushed = Counter("fraudstream_dashboard_alerts_pushed", "Alerts pushed to the live feed", registry=r)
        self.reviews = Counter(
            "fraudstream_dashboard_reviews", "Analysts' verdicts stored, by verdict", ["verdict"], registry=r
        )
        self.store_alerts = Gauge("fraudstream_store_alerts", "Alert rows in the store", registry=r)
        self.copier_behind = Gauge(
            "fraudstream_dashboard_copier_behind_records",
            "Records in the alert and dead-letter topics that the store has not copied (NaN: unknown)",
            registry=r,
        )
