"""The HTTP side as a user runs it: `notifyq serve`, `notifyq web`, flags and refusals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]


def cli(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "notifyq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DATABASE_URL": url, "HTTP_PORT": "0", **(env or {})},
    )


def test_serve_runs_workers_and_http_in_one_process(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve")
    base = serve.http_url()
    assert base.startswith("http://127.0.0.1:") and not base.endswith(":0")
    with httpx.Client(base_url=base, timeout=10) as http:
        created = http.post("/tasks", json={"kind": "reverse", "payload": "web"})
        assert created.status_code == 201
        task_id = created.json()["id"]
        until(lambda: http.get(f"/tasks/{task_id}").json()["status"] == "done", timeout=60)
        assert http.get(f"/tasks/{task_id}").json()["result"] == "bew"
        until(lambda: http.get("/health").status_code == 200, timeout=10)
        assert http.get("/workers").json()["workers"][0]["pid"] == serve.proc.pid
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=20) == 0
    assert "http.listening" in serve.names()


def test_sigint_with_an_open_event_stream_exits_promptly(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve")
    base = serve.http_url()
    lines: list[str] = []

    def read_stream() -> None:
        with httpx.Client(base_url=base, timeout=30) as http, http.stream("GET", "/events") as r:
            lines.extend(r.iter_lines())

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    until(lambda: lines[:1] == ["retry: 2000"], timeout=10)
    signalled = time.monotonic()
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=10) == 0
    # Not held up by the open stream (Hypercorn's graceful timeout would be 5 s).
    assert time.monotonic() - signalled < 3
    reader.join(timeout=10)
    assert not reader.is_alive()


def test_http_stays_up_while_workers_drain_and_health_says_stopping(
    database_url: str, notifyq: Start
) -> None:
    serve = notifyq(database_url, "serve", "--shutdown-timeout", "20")
    base = serve.http_url()
    with httpx.Client(base_url=base, timeout=10) as http:
        until(lambda: http.get("/health").status_code == 200, timeout=10)
        task_id = http.post("/tasks", json={"kind": "sleep", "payload": 2}).json()["id"]
        until(lambda: http.get(f"/tasks/{task_id}").json()["status"] == "in_progress")
        serve.signal(signal.SIGTERM)
        health = until(lambda: (r := http.get("/health")).status_code == 503 and r, timeout=5)
        assert health.json()["checks"]["process"] == {"ok": False, "detail": "shutting down"}
        # The page and API still answer while the running task finishes.
        assert http.get("/").status_code == 200
        until(lambda: http.get(f"/tasks/{task_id}").json()["status"] == "done", timeout=60)
    assert serve.wait(timeout=20) == 0


def test_web_serves_http_without_workers(database_url: str, notifyq: Start) -> None:
    web = notifyq(database_url, "web")
    base = web.http_url()
    with httpx.Client(base_url=base, timeout=10) as http:
        until(lambda: http.get("/health").status_code == 200, timeout=10)
        task_id = http.post("/tasks", json={"kind": "noop"}).json()["id"]
        assert http.get("/stats").json()["role"] == "web"
        assert http.get("/workers").json()["workers"] == []
        # Nobody runs it until a worker process comes.
        assert http.get(f"/tasks/{task_id}").json()["status"] == "pending"
        worker = notifyq(database_url, "serve", "--no-http")
        until(lambda: http.get(f"/tasks/{task_id}").json()["status"] == "done", timeout=60)
    assert "http.listening" not in worker.names()
    for proc in (web, worker):
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"


def test_non_loopback_without_token_is_refused(database_url: str) -> None:
    for command in ("serve", "web"):
        result = cli(database_url, command, "--http-host", "0.0.0.0")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            "notifyq: refusing to serve HTTP on 0.0.0.0 without API_TOKEN: anyone who reaches "
            "it could add and cancel tasks; set API_TOKEN, or pass --insecure-http to accept that"
        )


def test_non_loopback_with_token_or_insecure_flag_serves(database_url: str, notifyq: Start) -> None:
    with_token = notifyq(
        database_url, "web", "--http-host", "0.0.0.0", env={"API_TOKEN": "a-long-enough-token-123"}
    )
    insecure = notifyq(database_url, "web", "--http-host", "0.0.0.0", "--insecure-http")
    for proc in (with_token, insecure):
        port = proc.http_url().rsplit(":", 1)[1]
        with httpx.Client(timeout=10) as http:
            assert http.get(f"http://127.0.0.1:{port}/stats").status_code == 200
        proc.signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_bad_http_settings_and_a_taken_port_are_one_line_errors(database_url: str) -> None:
    bad = cli(database_url, "web", env={"HTTP_PORT": "99999"})
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "notifyq: invalid HTTP_PORT='99999': expected a TCP port from 0 to 65535 (0: any free port)"
    )
    short = cli(database_url, "web", env={"API_TOKEN": "short"})
    assert short.returncode == 2 and "short" not in short.stderr  # a token is never echoed
    assert "invalid API_TOKEN: expected at least 16 printable" in short.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli(database_url, "web", env={"HTTP_PORT": str(port)})
    assert busy.returncode == 2, busy.stderr
    assert f"notifyq: cannot serve HTTP on 127.0.0.1:{port}: Address already in use" in busy.stderr
