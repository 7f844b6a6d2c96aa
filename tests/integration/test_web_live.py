"""The real HTTP server (Hypercorn on a free port) through httpx: SSE, body limit, pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import trio

from notifyq import db
from notifyq.web.context import EndedSeries
from notifyq.web.live import LiveFeed
from tests.helpers import eventually, running_web


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) from the lines of a text/event-stream response."""
    name, data = "message", list[str]()
    async with aclosing(lines):  # type: ignore[type-var]  # an async generator at run time
        async for line in lines:
            if line == "":
                if data:
                    yield name, json.loads("\n".join(data))
                name, data = "message", list[str]()
            elif line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())


async def test_events_stream_says_when_a_task_ends(database: db.Database) -> None:
    async with (
        running_web(database) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
        http.stream("GET", "/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        # The stream's first line comes once the LISTEN for task ends is in effect.
        lines = response.aiter_lines()
        with trio.fail_after(5):
            first = await anext(lines)
        assert first == "retry: 2000"
        assert web.ctx.live.listening == {"notifyq_done"}
        # The 'queued' notification is sent only while a process waits for the queue
        # (notifyq.waiters): insert once the service has gone idle, or it may not be sent.
        await eventually(lambda: database.fetchval("SELECT count(*) FROM notifyq.waiters"))
        # Inserted by plain SQL: the event comes from the service's own LISTEN.
        task_id = await database.fetchval(
            "INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"abc\"') RETURNING id"
        )
        seen = []
        # Read the stream to its end (the server stops once the event came), so that
        # no half-read response is left to the garbage collector.
        with trio.fail_after(10):
            async for name, data in sse_events(lines):
                seen.append((name, data))
                if name == "task" and data["id"] == task_id:
                    web.stop.set()
        assert ("queued", {"queue": "default"}) in seen
        assert seen[-1] == (
            "task",
            {"id": task_id, "status": "done", "queue": "default", "kind": "reverse"},
        )


async def _true(value: bool) -> bool:
    return value


async def test_events_streams_end_when_the_server_stops(database: db.Database) -> None:
    async with (
        running_web(database, workers=False) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
        http.stream("GET", "/events") as response,
    ):
        await eventually(lambda: _true(web.ctx.live.subscribers == 1))
        web.stop.set()
        with trio.fail_after(2):  # well before Hypercorn's graceful timeout (5 s)
            body = [line async for line in response.aiter_lines()]
        assert body[:3] == ["retry: 2000", "event: ready", "data: {}"]
    assert web.ctx.live.subscribers == 0


async def test_chunked_body_over_the_limit_is_413(database: db.Database) -> None:
    # A chunked body has no Content-Length to refuse up front: the limit applies as it arrives.
    async with running_web(database, workers=False, http_body_limit=4096) as web:
        host, port = web.url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            body = b'{"kind": "noop", "payload": "' + b"x" * 10_000 + b'"}'
            for i in range(0, len(body), 1000):
                chunk = body[i : i + 1000]
                await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await stream.send_all(b"0\r\n\r\n")
            reply = b""
            with trio.fail_after(10):
                while b"}" not in reply.partition(b"\r\n\r\n")[2]:
                    reply += await stream.receive_some()
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413")
        assert json.loads(payload)["error"]["code"] == "request_entity_too_large"
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            assert (await http.post("/tasks", json={"kind": "noop"})).status_code == 201
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1


async def test_status_page_and_task_page_render_on_the_server(database: db.Database) -> None:
    async with (
        running_web(database) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
    ):
        task = (
            await http.post("/tasks", json={"kind": "reverse", "payload": ["<script>x</script>"]})
        ).json()

        async def ended() -> bool:
            return bool((await http.get(f"/tasks/{task['id']}")).json()["status"] == "error")

        await eventually(ended)
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert 'data-count="error">1<' in html
        assert f'href="/ui/tasks/{task["id"]}"' in html  # in recent failures
        assert "PayloadError: expected a JSON string" in html
        assert "https://" not in html  # no CDN: everything is served from here
        for asset in ["/static/page.js", "/static/page.css"]:
            assert asset in html
            assert (await http.get(asset)).status_code == 200
        detail = await http.get(f"/ui/tasks/{task['id']}")
        assert detail.status_code == 200
        assert (
            "&lt;script&gt;x&lt;/script&gt;" in detail.text
            and "<script>x</script>" not in detail.text
        )
        assert "failed" in detail.text  # the history table
        missing = await http.get("/ui/tasks/987654")
        assert missing.status_code == 404 and "task 987654 does not exist" in missing.text
        goto = await http.get("/ui/task", params={"id": task["id"]})
        assert goto.status_code == 302 and goto.headers["location"] == f"/ui/tasks/{task['id']}"
        for bad in ["\u00b2", "12x", "9" * 25, ""]:  # "²".isdigit() is true, int("²") fails
            odd = await http.get("/ui/task", params={"id": bad})
            assert odd.status_code == 302 and odd.headers["location"] == "/", bad
        summary = (await http.get("/ui/summary")).json()
        assert [t["id"] for t in summary["failures"]] == [task["id"]]
        assert summary["running"] == [] and summary["stats"]["counts_by_status"]["error"] == 1


def test_ended_series_counts_each_final_minute_once() -> None:
    series = EndedSeries(start_minute=600)

    def row(minute: int, status: str, n: int) -> tuple[int, str, int]:
        return (minute, status, n)

    series.apply(600 - 3540, 600, [row(540, "done", 7), row(600, "done", 2)])
    assert series.since_start() == {"done": 2, "error": 0, "cancelled": 0}  # 540 is before start
    # The next round re-reads the open minute 600, now final, and the new open one.
    series.apply(600, 660, [row(600, "done", 3), row(600, "error", 1), row(660, "done", 5)])
    assert series.since_start() == {"done": 8, "error": 1, "cancelled": 0}
    series.apply(660, 660, [row(660, "done", 6)])  # same minute again: replaced, not added
    assert series.since_start() == {"done": 9, "error": 1, "cancelled": 0}
    hour = series.last_hour()
    assert len(hour) == 60 and hour[-1] == (660, {"done": 6, "error": 0, "cancelled": 0})
    assert hour[-2] == (600, {"done": 3, "error": 1, "cancelled": 0})
    series.apply(660, 660 + 7200, [row(660, "done", 6)])  # two hours on: old minutes go
    assert sum(sum(c.values()) for _, c in series.last_hour()) == 0
    assert series.since_start()["done"] == 9


def test_the_feed_wants_task_ends_only_while_watched() -> None:
    feed = LiveFeed()
    assert feed.wanted_channels() == ()
    with feed.subscribe():
        assert feed.wanted_channels() == ("notifyq_done",)
        with feed.subscribe():
            assert feed.wanted_channels() == ("notifyq_done",)
    assert feed.wanted_channels() == ()


def test_a_task_ended_in_a_minute_that_is_over_is_still_counted() -> None:
    """finished_at is the outcome transaction's start: a task can show up in a minute after
    the round that closed it (it committed at the minute's turn). The recent minutes are
    read again, so it is counted, once."""
    series = EndedSeries(start_minute=600)
    series.apply(600 - 3540, 600, [])
    series.apply(series.reread_from() or 0, 660, [])  # 600 looked empty at 660:00.01
    late = [(600, "done", 4)]
    series.apply(series.reread_from() or 0, 660, late)  # committed at 660:00.02
    assert series.since_start() == {"done": 4, "error": 0, "cancelled": 0}
    series.apply(series.reread_from() or 0, 900, late)  # minute 600 is final now
    assert series.since_start() == {"done": 4, "error": 0, "cancelled": 0}
    series.apply(series.reread_from() or 0, 960, [])
    assert series.since_start() == {"done": 4, "error": 0, "cancelled": 0}
