"""Notifications about committed alerts: pure formatting and burst rules (`message`, `burst`),
the bookkeeping in the store (`ledger`), the receivers (`receivers`, through apprise) and the
follower that ties them together (`follower`)."""

from fraudstream.notify.follower import Notifier

__all__ = ["Notifier"]
