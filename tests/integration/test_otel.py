"""OpenTelemetry: producers record the trace context; attempt, claim and write spans."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import notifyq
from notifyq import db, otel, tracing
from notifyq.app import App, Task
from notifyq.engine.service import Service
from notifyq.otel import Tracing
from tests.helpers import eventually, running_service, wait_ended


@pytest.fixture
def spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def ids(context: trace.SpanContext) -> tuple[int, int]:
    return context.trace_id, context.span_id


def meta_of(dsn: str, task_id: int) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT meta FROM notifyq.tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None
    return row[0]


def test_a_producer_in_a_span_records_its_trace_context(
    database_url: str, spans: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    tracer, _ = spans
    with psycopg.connect(database_url) as conn:
        with tracer.start_as_current_span("POST /orders") as request:
            inside = notifyq.enqueue(conn, "noop")
            many = notifyq.enqueue_many(conn, [{"kind": "noop"}, {"kind": "noop"}])
            flow = notifyq.enqueue_workflow(
                conn,
                notifyq.chain(
                    notifyq.task("noop"),
                    notifyq.chord([notifyq.task("noop")], notifyq.task("noop")),
                ),
            )
        outside = notifyq.enqueue(conn, "noop")
    trace_id = format(request.get_span_context().trace_id, "032x")
    span_id = format(request.get_span_context().span_id, "016x")
    flags = format(request.get_span_context().trace_flags, "02x")
    for task_id in (inside, *many, *flow.ids):
        assert task_id is not None
        meta = meta_of(database_url, task_id)
        assert meta == {"trace": {"traceparent": f"00-{trace_id}-{span_id}-{flags}"}}
    assert meta_of(database_url, outside) is None


def test_attempt_claim_and_write_spans_link_to_the_producer(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    with tracer.start_as_current_span("producer") as producer:
        recorded = otel.task_meta()
    tracing = Tracing(tracer)
    tracing.claimed(["default"], time.time_ns(), [(7, recorded), (8, None)])
    with tracing.attempt(7, "resize", "default", 2, recorded) as span:
        tracing.outcome(span, "retried", "RuntimeError: boom")
    with tracing.write([(7, "retry")]):
        pass
    producer_span, claim_span, attempt_span, write_span = exporter.get_finished_spans()
    assert producer_span.name == "producer"
    producer_context = producer.get_span_context()
    assert claim_span.name == "notifyq claim"
    assert claim_span.attributes is not None and claim_span.attributes["notifyq.claimed"] == 2
    assert [ids(link.context) for link in claim_span.links] == [ids(producer_context)]
    assert attempt_span.name == "notifyq run resize"
    assert attempt_span.kind == trace.SpanKind.CONSUMER
    assert dict(attempt_span.attributes or {}) == {
        "messaging.system": "notifyq",
        "messaging.destination.name": "default",
        "notifyq.task.id": 7,
        "notifyq.task.kind": "resize",
        "notifyq.task.attempt": 2,
        "notifyq.task.outcome": "retried",
    }
    assert [ids(link.context) for link in attempt_span.links] == [ids(producer_context)]
    # A trace of its own, linked (not a child): a task may run long after, and again.
    assert attempt_span.context.trace_id != producer_context.trace_id
    assert attempt_span.status.status_code == trace.StatusCode.ERROR
    assert write_span.name == "notifyq write outcomes"
    assert dict(write_span.attributes or {}) == {"notifyq.outcomes": 1, "notifyq.task.ids": (7,)}


def test_without_a_span_nothing_of_opentelemetry_is_imported(database_url: str) -> None:
    code = (
        "import sys, psycopg, notifyq\n"
        f"with psycopg.connect({database_url!r}) as conn:\n"
        "    notifyq.enqueue(conn, 'noop')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'notifyq.otel'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("runtime", ["trio", "thread", "asyncio"])
async def test_a_service_records_claim_attempt_and_write_spans(
    runtime: str,
    database: db.Database,
    spans: tuple[trace.Tracer, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer, exporter = spans
    monkeypatch.setattr(tracing, "active", Tracing(tracer))
    app = App()

    def inner(task: Task) -> str:
        with tracer.start_as_current_span("inside the handler"):
            return "ok"

    if runtime == "trio":

        @app.handler("traced")
        async def on_trio(task: Task) -> str:
            return inner(task)

    elif runtime == "thread":
        app.handler("traced")(inner)
    else:

        @app.handler("traced", runtime="asyncio")
        async def on_asyncio(task: Task) -> str:
            return inner(task)

    with tracer.start_as_current_span("producer") as producer:
        task_id = await database.run(lambda conn: notifyq.enqueue(conn, "traced"))
    async with running_service(database, app):
        await wait_ended(database, task_id)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    attempt = finished["notifyq run traced"]
    assert attempt.attributes is not None
    assert attempt.attributes["notifyq.task.id"] == task_id
    assert attempt.attributes["notifyq.task.outcome"] == "done"
    assert [ids(link.context) for link in attempt.links] == [ids(producer.get_span_context())]
    # The handler's own span is a child of the attempt's, whatever the runtime.
    child = finished["inside the handler"]
    assert child.parent is not None and child.parent.span_id == attempt.context.span_id
    (claim,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "notifyq claim" and s.attributes and s.attributes["notifyq.claimed"]
    ]
    assert [ids(link.context) for link in claim.links] == [ids(producer.get_span_context())]
    write = finished["notifyq write outcomes"]
    assert write.attributes is not None
    assert write.attributes["notifyq.task.ids"] == (task_id,)


async def test_an_idle_service_records_no_empty_claim_spans(
    database: db.Database,
    spans: tuple[trace.Tracer, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer, exporter = spans
    monkeypatch.setattr(tracing, "active", Tracing(tracer))
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "noop"))
    async with running_service(database) as service:
        await wait_ended(database, task_id)
        # Wake-ups that find nothing: each runs a claim that takes no rows.
        for _ in range(3):
            before = service.claimer.claims
            await database.execute("SELECT pg_notify('notifyq', 'default')")
            await eventually(partial(_more_claims, service, before))
    claimed = [
        (s.attributes or {}).get("notifyq.claimed")
        for s in exporter.get_finished_spans()
        if s.name == "notifyq claim"
    ]
    assert claimed == [1]


async def _more_claims(service: Service, before: int) -> bool:
    return service.claimer.claims > before


async def test_a_transactional_attempt_records_its_span(
    database: db.Database,
    spans: tuple[trace.Tracer, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer, exporter = spans
    monkeypatch.setattr(tracing, "active", Tracing(tracer))
    app = App()

    @app.handler("traced_tx", transactional=True)
    async def traced_tx(task: Task) -> int:
        with tracer.start_as_current_span("inside the handler"):
            return int(await task.transaction.fetchval("SELECT 1"))

    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "traced_tx"))
    async with running_service(database, app):
        await wait_ended(database, task_id)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    attempt = finished["notifyq run traced_tx"]
    assert attempt.attributes is not None
    assert attempt.attributes["notifyq.task.outcome"] == "done"
    child = finished["inside the handler"]
    assert child.parent is not None and child.parent.span_id == attempt.context.span_id
