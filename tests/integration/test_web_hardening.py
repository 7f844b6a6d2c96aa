"""The HTTP side under load, big rows and forged notifications, on a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio

from notifyq import db, listen
from notifyq.web import live
from notifyq.web.live import LiveFeed
from tests.helpers import eventually, insert, running_web
from tests.integration.test_web_live import sse_events

MB = 1024 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


async def _ready(lines: AsyncIterator[str]) -> None:
    """Read a stream's lines up to its `ready` event."""
    with trio.fail_after(10):
        async for line in lines:
            if line == "event: ready":
                return
    raise AssertionError("the stream ended before `ready`")


# --- /events shows only what the table confirms -------------------------------------------


async def test_forged_notifications_never_reach_events(database: db.Database) -> None:
    """Any role may NOTIFY notifyq_done or notifyq_cancel: the feed publishes what the table
    says, for ids the table confirms, and nothing for a pending task or a garbage payload."""
    async with (
        running_web(database) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
        http.stream("GET", "/events") as response,
    ):
        lines = response.aiter_lines()
        await _ready(lines)
        # A pending task on a queue nobody serves: it stays pending.
        parked = await insert(database, "noop", queue="nobody")
        forged = json.dumps({"id": parked, "status": "done", "queue": "nobody", "kind": "noop"})
        garbage = [
            "not json",
            "[]",
            '{"id": "abc"}',
            '{"id": true}',
            '{"id": 1e400}',
            '{"id": -5}',
            '{"id": 99999999999999999999999}',
            '{"status": "done"}',
            "x" * 7000,
        ]
        for payload in [forged, *garbage]:
            await database.execute("SELECT pg_notify('notifyq_done', $1)", payload)
        await database.execute("SELECT pg_notify('notifyq_cancel', $1)", str(parked))
        await trio.sleep(0.5)  # a coalescing window or two: the forgeries would be out by now
        real = await insert(database, "reverse", "abc")
        seen: list[tuple[str, Any]] = []
        with trio.fail_after(10):
            async for name, data in sse_events(lines):
                seen.append((name, data))
                if name == "task" and data["id"] == real:
                    web.stop.set()
        tasks = [data for name, data in seen if name == "task"]
        assert tasks == [{"id": real, "status": "done", "queue": "default", "kind": "reverse"}]
        assert not [data for name, data in seen if name == "cancel_requested"]
        row = await database.fetchrow("SELECT status FROM notifyq.tasks WHERE id = $1", parked)
        assert row is not None and row["status"] == "pending"


async def test_a_forged_status_is_replaced_by_the_tables(database: db.Database) -> None:
    """A notification naming a task that did end, with a status it did not end in: the
    event carries the table's status, queue and kind."""
    async with (
        running_web(database, workers=False) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
        http.stream("GET", "/events") as response,
    ):
        lines = response.aiter_lines()
        await _ready(lines)
        ended = await insert(database, "real_kind", status="error", finished_at=_now())
        lie = {"id": ended, "status": "done", "queue": "elsewhere", "kind": "fake"}
        await database.execute("SELECT pg_notify('notifyq_done', $1)", json.dumps(lie))
        with trio.fail_after(10):
            async for name, data in sse_events(lines):
                if name == "task":
                    assert data == {
                        "id": ended,
                        "status": "error",
                        "queue": "default",
                        "kind": "real_kind",
                    }
                    web.stop.set()


# --- fan-out: batched, bounded, never blocking ----------------------------------------------


async def test_events_of_one_window_reach_a_subscriber_as_one_message(
    database: db.Database,
) -> None:
    """Hundreds of task ends in one coalescing window: one query, one message per subscriber."""
    ids = [
        int(r["id"])
        for r in await database.fetch(
            "INSERT INTO notifyq.tasks (kind, status, finished_at) "
            "SELECT 'noop', 'done', now() FROM generate_series(1, 300) RETURNING id"
        )
    ]
    feed = LiveFeed()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run, database)
        with feed.subscribe() as receive:
            for task_id in ids:  # what the listener does: one call per notification
                feed.on_notification(
                    "notifyq_done",
                    json.dumps({"id": task_id, "status": "done", "queue": "default", "kind": "x"}),
                )
            feed.on_notification("notifyq", "default")
            with trio.fail_after(10):
                message = await receive.receive()
            text = message.decode()
            events = [
                (lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: ")))
                for lines in (block.splitlines() for block in text.split("\n\n") if block)
            ]
            listed = [data["id"] for name, data in events if name == "task"]
            # The first ones as `task` events (at most the cap), the rest said by a `resync`.
            assert listed == ids[: live.MAX_LISTED_TASKS] and len(ids) > live.MAX_LISTED_TASKS
            assert ("resync", {}) in events and ("queued", {"queue": "default"}) in events
            with trio.move_on_after(0.5):
                extra = await receive.receive()
                raise AssertionError(f"a second message for one window: {extra[:200]!r}")
        nursery.cancel_scope.cancel()


async def test_a_slow_subscriber_is_cut_off_without_blocking_the_feed(
    database: db.Database,
) -> None:
    task_id = await insert(database, "noop", status="done", finished_at=_now())
    note = json.dumps({"id": task_id, "status": "done", "queue": "default", "kind": "noop"})
    feed = LiveFeed(window_s=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run, database)
        with feed.subscribe(buffer=2) as slow, feed.subscribe() as fast:
            for _ in range(5):  # five windows; the slow one never reads
                feed.on_notification("notifyq_done", note)
                with trio.fail_after(10):
                    assert b'"id": %d' % task_id in await fast.receive()
            assert feed.subscribers == 1  # fell behind: its stream ends, the browser reconnects
            feed.on_notification("notifyq_done", "not json")  # counted, logged, dropped
            feed.on_notification("notifyq_done", '{"id": 1e400}')
            assert feed.bad_payloads == 2
            assert len([m async for m in slow]) == 2
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_stream(url: str) -> AsyncIterator[bytes]:
    """GET /events on a plain socket, open until the block ends; yields the head and the
    body up to the `ready` event (or the whole answer, when the server refused it)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        with trio.fail_after(10):
            while b"event: ready" not in reply and b'"error"' not in reply:
                chunk = await stream.receive_some()
                if not chunk:
                    break
                reply += chunk
        yield reply


async def test_open_streams_are_bounded_with_a_503(database: db.Database) -> None:
    async with running_web(database, workers=False, http_max_streams=2) as web:
        async with raw_stream(web.url) as one, raw_stream(web.url) as two:
            assert one.startswith(b"HTTP/1.1 200") and two.startswith(b"HTTP/1.1 200")
            async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
                refused = await http.get("/events")
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) > 0
            error = refused.json()["error"]
            assert error["code"] == "too_many_streams" and "HTTP_MAX_STREAMS" in error["message"]
        # Closed streams free their places.
        await eventually(lambda: _true(web.ctx.live.subscribers == 0))
        async with raw_stream(web.url) as again:
            assert again.startswith(b"HTTP/1.1 200") and b"event: ready" in again


async def _true(value: bool) -> bool:
    return value


# --- the probe and the feed share the LISTEN connection ------------------------------------


async def test_listen_unlisten_and_the_probe_may_overlap(database: db.Database) -> None:
    """The events feed (LISTEN/UNLISTEN) and the probe (a statement) use one connection at
    the same time: each waits for the other instead of failing the connection."""
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_probe_test"]) as conn:

        async def feed() -> None:
            for _ in range(30):
                await conn.listen("notifyq_done")
                await conn.unlisten("notifyq_done")

        async def probe() -> None:
            for _ in range(30):
                await conn.execute("SELECT pg_notify('notifyq_probe_test', 'probe')")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(probe)
                nursery.start_soon(probe)
        got = 0
        with trio.move_on_after(2):
            async for _note in conn:
                got += 1
                if got == 60:
                    break
        assert got == 60


# --- big rows: bounded previews in lists and pages -----------------------------------------


async def test_big_payloads_and_results_are_cut_in_lists_and_the_page(
    database: db.Database,
) -> None:
    big = "x" * (3 * MB)
    running = await insert(
        database,
        "noop",
        {"blob": big},
        status="in_progress",
        locked_by="elsewhere",
        locked_until=_now() + timedelta(hours=1),
        started_at=_now(),
    )
    failed = await insert(
        database, "noop", {"small": 1}, status="error", error="boom", result=big, finished_at=_now()
    )
    small = await insert(database, "noop", {"small": 2})
    async with (
        running_web(database, workers=False) as web,
        httpx.AsyncClient(base_url=web.url, timeout=30) as http,
    ):
        listed = await http.get("/tasks")
        assert listed.status_code == 200 and len(listed.content) < 64 * 1024
        by_id = {t["id"]: t for t in listed.json()["tasks"]}
        cut = by_id[running]
        assert cut["payload_truncated"] is True and cut["result_truncated"] is False
        assert isinstance(cut["payload"], str) and cut["payload"].startswith('{"blob": "xxx')
        assert 1000 <= len(cut["payload"]) <= 4096
        assert by_id[failed]["result_truncated"] is True
        assert by_id[failed]["payload"] == {"small": 1}
        assert by_id[small]["payload"] == {"small": 2}
        assert by_id[small]["payload_truncated"] is False
        for path in ["/", "/ui/summary"]:
            page = await http.get(path)
            assert page.status_code == 200 and len(page.content) < 64 * 1024, path
        summary = (await http.get("/ui/summary")).json()
        assert [t["id"] for t in summary["running"]] == [running]
        assert summary["running"][0]["payload_truncated"] is True
        assert summary["failures"][0]["result_truncated"] is True
        # The task's own endpoint carries the whole payload, and a preview of it, which
        # payload_truncated says is cut (GET /tasks/{id}/payload downloads it whole).
        whole = (await http.get(f"/tasks/{running}")).json()
        assert whole["payload"] == {"blob": big} and whole["payload_truncated"] is True
        assert len(whole["payload_preview"]) == 4096
        spec = (await http.get("/openapi.json")).json()
        fields = spec["components"]["schemas"]["TaskOut"]["properties"]
        assert {"payload_truncated", "result_truncated"} <= set(fields)


# --- headers: no framing, no sniffing, scripts from this origin only -----------------------


@pytest.mark.parametrize("path", ["/", "/docs", "/ui/tasks/1", "/tasks", "/openapi.json"])
async def test_responses_carry_security_headers(database: db.Database, path: str) -> None:
    async with running_web(database, workers=False) as web:
        response = await web.test_client().get(path)
        headers = response.headers
        policy = headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
