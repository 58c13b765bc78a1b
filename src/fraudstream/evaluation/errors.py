"""Errors the user can fix: a missing or unreadable input of `fraudstream evaluate`."""

from __future__ import annotations

from fraudstream.errors import UserFacingError


class EvaluationInputError(UserFacingError):
    """An input to the evaluation (labelled events or alerts) is missing or unreadable."""


class AlertStoreMissingError(EvaluationInputError):
    """The alert database file, or its fraud_alerts table, does not exist."""
