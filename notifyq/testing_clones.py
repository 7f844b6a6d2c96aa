"""Test databases cloned ahead of the tests that take them.

Cloning the migrated template takes 50–150 ms and dropping a database 20–30 ms; a suite of
a thousand tests would wait minutes for them. A thread of the plugin's keeps a few clones
ready and drops the used ones, while the tests run: a test takes a database that exists
already, and its end does not wait for the drop.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
from typing import Any

_REFILL = object()
_STOP = object()


def execute(url: str, statement: str, *args: Any) -> Any:
    """One statement on the server, from a thread with no event loop; returns the first
    column of its first row."""
    import asyncpg

    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


class Clones:
    """Databases cloned from ``template`` on the server at ``server_url``, ``ahead`` of need."""

    def __init__(self, server_url: str, template: str, *, ahead: int = 2) -> None:
        self.server_url, self.template = server_url, template
        self._numbers = iter(range(1, sys.maxsize))
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._work: queue.Queue[object] = queue.Queue()
        for _ in range(ahead):
            self._work.put(_REFILL)
        self._thread = threading.Thread(target=self._run, name="notifyq-clones", daemon=True)
        self._thread.start()

    def take(self, *, timeout_s: float = 120) -> str:
        """The name of a fresh clone, for the caller alone; another is cloned meanwhile."""
        try:
            got = self._ready.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"no test database was cloned within {timeout_s:g} s") from None
        if isinstance(got, BaseException):
            raise RuntimeError(f"cloning a test database failed: {got}") from got
        self._work.put(_REFILL)
        return got

    def give_back(self, name: str) -> None:
        """Drop ``name`` (with any connection still open to it), after the clones asked for."""
        self._work.put(name)

    def close(self) -> None:
        """Drop every clone, used or not; wait for the thread to end."""
        self._work.put(_STOP)
        self._thread.join(timeout=120)
        while not self._ready.empty():
            got = self._ready.get_nowait()
            if isinstance(got, str):
                self._drop(got)

    def _run(self) -> None:
        while (item := self._work.get()) is not _STOP:
            try:
                if item is _REFILL:
                    self._ready.put(self._clone())
                else:
                    self._drop(str(item))
            except Exception as exc:  # handed to the test that takes the next clone
                if item is _REFILL:
                    self._ready.put(exc)

    def _clone(self) -> str:
        name = f"notifyq_testing_{os.getpid()}_{next(self._numbers)}"
        execute(self.server_url, f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return name

    def _drop(self, name: str) -> None:
        execute(self.server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
