"""OpenTelemetry (the optional ``otel`` extra): trace context from producer to attempt.

A producer records the current trace context in the task's ``meta`` (W3C ``traceparent``);
each attempt then runs in a span *linked* to it (a task may run long after, and more than
once, so it is not a child), carrying task id, kind, queue, attempt and outcome; the claim
and the outcome write are spans of their own, linked to the tasks they carry.

Nothing imports this module unless OpenTelemetry is installed: producers import it only once
the application has imported ``opentelemetry.trace``, and a worker process asks
:func:`tracing` once at start, keeping ``None`` when the extra is missing, so its hot path
pays one ``is None`` check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace

from notifyq.vocabulary import Verdict

TRACER_NAME = "notifyq"
META_KEY = "trace"


def task_meta() -> dict[str, Any] | None:
    """The task's meta for the current trace context, or None outside any span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {META_KEY: carrier} if carrier else None


def _link(meta: Mapping[str, Any] | None) -> trace.Link | None:
    """A link to the producer's span recorded in ``meta``, if any."""
    if not isinstance(meta, Mapping):
        return None
    carrier = meta.get(META_KEY)
    if not isinstance(carrier, Mapping):
        return None
    ctx = propagate.extract({str(k): str(v) for k, v in carrier.items()})
    span_context = trace.get_current_span(ctx).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


class Tracing:
    """The spans a worker process records."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer(TRACER_NAME)

    @contextmanager
    def attempt(
        self, task_id: int, kind: str, queue: str, attempt: int, meta: Mapping[str, Any] | None
    ) -> Iterator[trace.Span]:
        """The span of one attempt, current while the handler runs (so the handler's own
        spans are its children). Set the outcome with :meth:`outcome`."""
        link = _link(meta)
        with self.tracer.start_as_current_span(
            f"notifyq run {kind}",
            # A fresh trace per attempt, linked to the producer's.
            context=context.Context(),
            kind=trace.SpanKind.CONSUMER,
            links=[link] if link else None,
            attributes={
                "messaging.system": "notifyq",
                "messaging.destination.name": queue,
                "notifyq.task.id": task_id,
                "notifyq.task.kind": kind,
                "notifyq.task.attempt": attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def outcome(span: trace.Span, outcome: str, error: str | None = None) -> None:
        span.set_attribute("notifyq.task.outcome", outcome)
        if outcome not in (Verdict.DONE, Verdict.RELEASED, Verdict.CANCELLED):
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))

    def claimed(
        self,
        queues: Iterable[str],
        start_ns: int,
        metas: Iterable[tuple[int, Mapping[str, Any] | None]],
    ) -> None:
        """The span of one claim that took rows, from ``start_ns`` (``time.time_ns()``) to
        now, linked to the producers of the tasks (``metas``: (task id, meta)). A claim
        that took nothing records no span: an idle process would send an empty trace at
        every wake-up."""
        span = self.tracer.start_span(
            "notifyq claim",
            context=context.Context(),
            kind=trace.SpanKind.CLIENT,
            attributes={"notifyq.queues": list(queues)},
            start_time=start_ns,
        )
        count = 0
        for task_id, meta in metas:
            count += 1
            link = _link(meta)
            if link is not None:
                span.add_link(link.context, {"notifyq.task.id": task_id})
        span.set_attribute("notifyq.claimed", count)
        span.end()

    @contextmanager
    def write(self, outcomes: Iterable[tuple[int, str]]) -> Iterator[trace.Span]:
        """The span of one batched outcome write."""
        pairs = list(outcomes)
        with self.tracer.start_as_current_span(
            "notifyq write outcomes",
            context=context.Context(),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "notifyq.outcomes": len(pairs),
                "notifyq.task.ids": [task_id for task_id, _ in pairs][:100],
            },
        ) as span:
            yield span


def tracing() -> Tracing:
    return Tracing()
