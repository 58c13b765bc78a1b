"""Small questions about local servers that several commands ask: where this machine reaches a
listener, whether something answers on a port, and a free port to listen on."""

from __future__ import annotations

import socket


def loopback(host: str) -> str:
    """Where this machine reaches a server listening on `host` (any address: loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts connections on host:port (as reached from here)."""
    try:
        with socket.create_connection((loopback(host), port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str) -> int:
    """A port nothing listens on at `host` now (the OS's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((loopback(host), 0))
        return s.getsockname()[1]
