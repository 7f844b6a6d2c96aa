"""How many transactional handlers a process runs at once: the pool's connections less the
engine's own, never more than WORKER_COUNT, at least one."""

from __future__ import annotations

import pytest

from notifyq import budget
from notifyq.app import App, Task
from notifyq.settings import load


@pytest.mark.parametrize(
    ("pool_size", "worker_count", "slots"),
    [(10, 5, 5), (6, 5, 2), (4, 8, 1), (3, 5, 1), (2, 5, 1), (30, 20, 20)],
)
def test_transactional_slots(pool_size: int, worker_count: int, slots: int) -> None:
    settings = load(pool_size=pool_size, worker_count=worker_count)
    assert budget.transactional_slots(settings) == slots


def test_transactional_must_be_a_bool() -> None:
    app = App()
    with pytest.raises(TypeError, match="transactional must be True or False, got 'yes'"):

        @app.handler("k", transactional="yes")  # type: ignore[arg-type]
        async def k(task: Task) -> None: ...


def test_the_flag_is_kept_per_kind() -> None:
    app = App()

    @app.handler("tx", transactional=True)
    def tx(task: Task) -> None: ...

    @app.handler("plain")
    def plain(task: Task) -> None: ...

    assert (app.handlers["tx"].transactional, app.handlers["plain"].transactional) == (True, False)
