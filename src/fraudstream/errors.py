"""The base of every error a user can fix: the CLI prints it as one line, without a traceback."""


class UserFacingError(Exception):
    """A mistake or a missing piece the user can fix (a wrong flag, a missing file, no broker)."""
