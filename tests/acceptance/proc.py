"""Run the real `notifyq` CLI as a subprocess and read its JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests import pg


class Notifyq:
    """One `python -m notifyq ...` process with JSON logs captured to a file."""

    def __init__(self, url: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by close())
            "w+", prefix="notifyq-log-", suffix=".jsonl"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notifyq", *args],
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            text=True,
            # HTTP_PORT=0: many processes in parallel, each on a free port (see http_url()).
            env={
                **os.environ,
                "DATABASE_URL": url,
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
                "HTTP_PORT": "0",
                **(env or {}),
            },
        )

    def stderr(self) -> str:
        with open(self.log_file.name) as f:
            return f.read()

    def events(self) -> list[dict[str, Any]]:
        lines = self.stderr().splitlines()
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append({"event": "<text>", "text": line})
        return found

    def names(self) -> list[str]:
        return [e.get("event", "") for e in self.events()]

    def wait_for(self, event: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e.get("event") == event:
                    return e
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exited {self.proc.returncode} before {event!r}: {self.names()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {event!r} within {timeout}s: {self.names()}")

    def wait_running(self, n: int, timeout: float = 20) -> None:
        """Wait until n handlers have started (needs LOG_LEVEL=debug for task.start lines).

        A row turns in_progress when it is claimed, a moment before a worker starts its
        handler: a test that signals "while tasks run" waits for this, not for the row."""
        until(lambda: self.names().count("task.start") >= n, timeout=timeout)

    def http_url(self, timeout: float = 20) -> str:
        """The base URL the process serves HTTP on (from its http.listening line)."""
        urls = self.wait_for("http.listening", timeout)["urls"]
        return str(urls[0])

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log_file.close()


def until(check: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``check()`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def scalar(url: str, query: str) -> str:
    return pg.psql(url, query)
