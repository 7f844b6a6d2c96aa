"""Where the HTTP side may listen, and to whom it answers."""

from __future__ import annotations

import ipaddress

from notifyq import errors
from notifyq.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without a token, unless told to."""
    host = settings.http_host
    if is_loopback(host) or settings.tokens() or settings.insecure_http:
        return
    raise errors.ConfigError(
        f"refusing to serve HTTP on {host} without API_TOKEN: anyone who reaches it could "
        "add and cancel tasks; set API_TOKEN, or pass --insecure-http to accept that"
    )
