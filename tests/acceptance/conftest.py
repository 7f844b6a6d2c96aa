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
        proc.kill()
        # Shown by pytest only when the test failed.
        tail = "\n".join(proc.stderr().splitlines()[-60:])
        args = proc.proc.args
        shown = " ".join(str(a) for a in args[3:]) if isinstance(args, list) else str(args)
        print(f"--- {shown} exited {proc.proc.returncode}:\n{tail}")
        proc.close()
