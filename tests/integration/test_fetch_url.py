"""The fetch_url kind against a real HTTP server on loopback (no outside network)."""

from __future__ import annotations

from functools import partial

import trio

from notifyq import db
from tests.helpers import insert, running_service, wait_ended

BODY = b"hello from loopback"


async def serve_one_page(stream: trio.SocketStream) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        request += chunk
    status = b"200 OK" if request.startswith(b"GET /page ") else b"404 Not Found"
    await stream.send_all(
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + BODY
    )
    await stream.aclose()


async def test_fetch_url_reports_status_bytes_and_time(database: db.Database) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, serve_one_page, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with running_service(database):
            ok = await insert(database, "fetch_url", f"http://127.0.0.1:{port}/page")
            missing = await insert(database, "fetch_url", {"url": f"http://127.0.0.1:{port}/nope"})
            bad = await insert(database, "fetch_url", "ftp://example.invalid/")
            rows = await wait_ended(database, ok, missing, bad)
        nursery.cancel_scope.cancel()
    assert rows[0]["status"] == "done"
    assert rows[0]["result"]["status"] == 200
    assert rows[0]["result"]["bytes"] == len(BODY)
    assert rows[0]["result"]["elapsed_ms"] >= 0
    assert (rows[1]["status"], rows[1]["result"]["status"]) == ("done", 404)
    assert rows[2]["status"] == "error"
    assert rows[2]["error"].startswith("PayloadError: expected an http(s) URL")
