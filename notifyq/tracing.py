"""Whether this process records OpenTelemetry spans: :data:`active` is None unless the
optional ``otel`` extra is installed (then see :mod:`notifyq.otel`).

Asked once at start-up, so that the hot path pays one ``is None`` check and a process
without the extra never imports OpenTelemetry.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifyq.otel import Tracing

active: Tracing | None = None


def start() -> Tracing | None:
    """Turn tracing on if OpenTelemetry is installed; returns it (or None)."""
    global active
    if active is None and importlib.util.find_spec("opentelemetry.sdk") is not None:
        from notifyq import otel

        active = otel.tracing()
    return active
