"""Whether this process records OpenTelemetry spans: :data:`active` is None unless the
optional ``otel`` extra is installed *and* the application configured a tracer provider
(then see :mod:`notifyq.otel`).

Decided once, when a service starts (after ``--app`` was imported, where an application
sets its provider up), so that the hot path pays one ``is None`` check, and a process
without the extra never imports OpenTelemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from notifyq import extras

if TYPE_CHECKING:
    from notifyq.otel import Tracing

active: Tracing | None = None


def start() -> Tracing | None:
    """Turn tracing on if OpenTelemetry is installed and a provider is set; returns it."""
    global active
    if active is not None or not extras.installed("opentelemetry.sdk"):
        return active
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None  # nobody records spans: creating them would only cost time
    from notifyq import otel

    active = otel.Tracing(provider.get_tracer(otel.TRACER_NAME))
    return active
