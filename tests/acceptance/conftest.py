from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.acceptance.proc import Notifyq


@pytest.fixture
def notifyq() -> Iterator[Callable[..., Notifyq]]:
    """Start CLI processes; every one is stopped when the test ends."""
    started: list[Notifyq] = []

    def start(url: str, *args: str, env: dict[str, str] | None = None) -> Notifyq:
        proc = Notifyq(url, *args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
