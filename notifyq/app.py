"""Handlers: functions that do a task's work, registered by ``kind``.

    import notifyq

    app = notifyq.App()

    @app.handler("resize", timeout_s=60)
    async def resize(task: notifyq.Task) -> dict:      # on trio
        ...

    @app.handler("report")
    def report(task: notifyq.Task) -> dict:             # blocking code, in a worker thread
        ...

    @app.handler("fetch", runtime="asyncio")
    async def fetch(task: notifyq.Task) -> dict:       # asyncio libraries (asyncpg, aiohttp)
        ...

    @app.handler("invoice", transactional=True)
    async def invoice(task: notifyq.Task) -> None:     # its writes commit with `done`
        await task.transaction.execute("INSERT INTO invoices (task_id) VALUES ($1)", task.id)

How each runs: :mod:`notifyq.engine.runtimes`.

Load it with ``notifyq serve --app mymodule:app`` (or ``NOTIFYQ_APP``). The built-in kinds
(reverse, demo, sleep, noop, fetch_url, in :mod:`notifyq.kinds`) are always there; an app may
replace them.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar, Unpack, overload

from notifyq import db, limits, typed
from notifyq.errors import ConfigError, WorkflowError
from notifyq.lineage import PAGE_SIZE, Lineage, SyncLineage
from notifyq.schedules import Schedule, ScheduleError, define
from notifyq.spec import PlainOptions
from notifyq.store import BatchProgress, TaskState


@dataclass(frozen=True, slots=True)
class Task:
    """What a handler receives: one claimed attempt of a task.

    Its workflow (:mod:`notifyq.lineage`) is read only when asked for, once per attempt:
    ``await task.parents()``, ``await task.parent_result()``, ``await task.batch()``,
    ``async for m in task.batch_results()``; in a ``def`` handler the same through
    ``task.sync``.
    """

    id: int
    queue: str
    kind: str
    payload: Any
    attempt: int
    max_attempts: int
    priority: int = 0
    meta: Any = None  # what travels with the task besides its payload (trace context)
    _: KW_ONLY  # what the engine adds is named where a Task is built, never placed
    # A transactional handler's open transaction, in its runtime's form (trio: awaitable
    # execute/fetch..., asyncio: the asyncpg connection, def: blocking execute/fetch...);
    # its writes commit with the `done` outcome or not at all. None for other handlers.
    transaction: Any = None
    # The process's database, for the workflow reads (None: a Task built by hand).
    database: db.Database | None = field(default=None, repr=False, compare=False)
    # The reads' cache: a slot that __init__ leaves empty (no cost for a task that never
    # asks), filled on the first ask.
    _lineage: Lineage = field(init=False, repr=False, compare=False)

    def _reads(self) -> Lineage:
        try:
            return self._lineage
        except AttributeError:
            pass
        if self.database is None:
            raise WorkflowError(f"task {self.id} has no database to read its workflow from")
        lineage = Lineage(self.database, self.id)
        object.__setattr__(self, "_lineage", lineage)  # frozen: set once, here
        return lineage

    async def parents(self) -> Mapping[int, TaskState]:
        """The tasks of its ``depends_on``, in that order: id -> (id, status, result,
        error). Empty for a task without parents."""
        return await self._reads().parents()

    async def parent_result(self) -> Any:
        """The result of its single parent (a chain's previous step); WorkflowError when
        it has not exactly one parent, or that parent did not end done."""
        return await self._reads().parent_result()

    async def batch(self) -> BatchProgress:
        """The batch whose callback this task is (total, done, failed, remaining)."""
        return await self._reads().batch()

    def batch_results(self, page_size: int = PAGE_SIZE) -> AsyncIterator[TaskState]:
        """Its batch's members (id, status, result, error) in id order, read ``page_size``
        at a time: at most one page is held in memory."""
        return self._reads().batch_results(page_size)

    @property
    def sync(self) -> SyncLineage:
        """The same reads from a ``def`` handler's worker thread, without ``await``."""
        return SyncLineage(self._reads())


P = ParamSpec("P")
R = TypeVar("R")

# The attempt a typed task's function runs for, set around it by its handler.
_current: ContextVar[Task] = ContextVar("notifyq_current_task")


def current_task() -> Task:
    """The attempt a typed task's function runs for (``.id``, ``.attempt``,
    ``.transaction`` of a ``transactional=True`` one); LookupError outside one."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_task() is known only inside a typed task's function") from None


HandlerFn = Callable[[Task], Any]
"""``async def`` (trio or, with ``runtime="asyncio"``, asyncio) or a plain ``def``."""

Runtime = Literal["trio", "thread", "asyncio"]


def runtime_of(kind: str, fn: Callable[..., Any], runtime: str | None) -> Runtime:
    """Where ``fn`` runs: ``runtime="asyncio"`` as asked, else trio for an ``async def``
    and a worker thread for a plain ``def``."""
    if not callable(fn):
        raise TypeError(f"handler {kind!r} is not callable: {fn!r}")
    # An object whose __call__ is an async def counts as async too.
    is_async = inspect.iscoroutinefunction(fn) or (
        not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )
    if runtime == "asyncio":
        if not is_async:
            raise TypeError(f"handler {kind!r}: runtime='asyncio' needs an async def, got {fn!r}")
        return "asyncio"
    if runtime is not None:
        raise ValueError(f"handler {kind!r}: runtime must be 'asyncio' or omitted, got {runtime!r}")
    return "trio" if is_async else "thread"


@dataclass(frozen=True, slots=True)
class Handler:
    kind: str
    fn: HandlerFn
    timeout_s: float | None = None
    runtime: Runtime = "trio"
    transactional: bool = False  # the outcome is written in the handler's transaction


@dataclass
class App:
    """A registry of handlers by kind, the queue limits and the schedules the code declares."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    queues: dict[str, limits.LimitChange] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)

    def queue(
        self,
        name: str,
        *,
        concurrency: int | limits.Keep | None = limits.KEEP,
        rate: str | limits.Keep | None = limits.KEEP,
        per_key_concurrency: int | limits.Keep | None = limits.KEEP,
        paused: bool | None = None,
        fair: bool | None = None,
        age_priority_after: float | limits.Keep | None = limits.KEEP,
    ) -> None:
        """Declare limits of queue ``name``, written to notifyq.queues when a process starts.

        Only the fields given are written (None: no limit of that kind); the others keep
        what the table holds, so ``notifyq queue set`` can still pause the queue. A bad
        value raises :class:`notifyq.limits.LimitError` here.
        """
        self.queues[name] = limits.change(
            name,
            concurrency=concurrency,
            rate=rate,
            per_key_concurrency=per_key_concurrency,
            paused=paused,
            fair=fair,
            age_priority_after=age_priority_after,
        )

    def schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        every: str | float | None = None,
        kind: str,
        payload: Any = None,
        queue: str = "default",
        priority: int = 0,
        tz: str = "UTC",
        catch_up: str = "coalesce",
        catch_up_limit: int = 100,
    ) -> Schedule:
        """Declare a periodic schedule: a task of ``kind`` at every tick of ``cron`` (in
        ``tz``) or of ``every`` (``"30s"``, ``"1h"``). Every process of the app adds it to
        ``notifyq.schedules`` at start. A bad definition raises ``ScheduleError`` here."""
        schedule = define(
            name,
            cron=cron,
            every=every,
            kind=kind,
            payload=payload,
            queue=queue,
            priority=priority,
            tz=tz,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
        )
        self.schedules[name] = schedule
        return schedule

    def check_schedules(self) -> None:
        """Every declared schedule names a kind this app handles (checked at start)."""
        for schedule in self.schedules.values():
            if schedule.kind not in self.handlers:
                raise ConfigError(
                    f"invalid schedule {schedule.name!r}: no handler for kind "
                    f"{schedule.kind!r} (known: {', '.join(sorted(self.handlers))})"
                )

    def handler(
        self,
        kind: str,
        *,
        timeout_s: float | None = None,
        runtime: str | None = None,
        transactional: bool = False,
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Register ``fn`` for ``kind``; ``timeout_s`` is the kind's default time limit.

        An ``async def`` runs on trio, a plain ``def`` in a worker thread;
        ``runtime="asyncio"`` runs an ``async def`` on the process's asyncio loop.
        ``transactional=True`` gives the handler ``task.transaction``: its writes there
        commit together with the task's ``done``, or not at all (README "Transactional
        handlers").
        """
        if not kind or len(kind) > 128:
            raise ValueError(f"kind must be 1-128 characters, got {kind!r}")
        if timeout_s is not None and not (0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not isinstance(transactional, bool):
            raise TypeError(f"transactional must be True or False, got {transactional!r}")

        def register(fn: HandlerFn) -> HandlerFn:
            self.handlers[kind] = Handler(
                kind, fn, timeout_s, runtime_of(kind, fn, runtime), transactional
            )
            return fn

        return register

    @overload
    def task(self, fn: Callable[P, R], /) -> typed.TypedTask[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        kind: str | None = None,
        timeout_s: float | None = None,
        runtime: str | None = None,
        transactional: bool = False,
        **defaults: Unpack[PlainOptions],
    ) -> Callable[[Callable[P, R]], typed.TypedTask[P, R]]: ...
    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        kind: str | None = None,
        timeout_s: float | None = None,
        runtime: str | None = None,
        transactional: bool = False,
        **defaults: Unpack[PlainOptions],
    ) -> Any:
        """Register a function with annotated parameters as the handler of its kind and
        return it as a typed task (:mod:`notifyq.typed`): ``resize.enqueue(conn,
        image_id=1)``. ``kind`` defaults to ``module.qualname``; ``timeout_s``, ``runtime``
        and ``transactional`` are :meth:`handler`'s (the function reads its attempt through
        :func:`current_task`); ``defaults`` are the tasks' options (queue, priority, ...)."""

        def register(fn: Callable[..., Any]) -> typed.TypedTask[..., Any]:
            made = typed.typed_task(fn, kind=kind, options=defaults)
            self.handler(
                made.kind, timeout_s=timeout_s, runtime=runtime, transactional=transactional
            )(typed.handler_of(fn, made.signature, _current))
            return made

        return register if fn is None else register(fn)

    def get(self, kind: str) -> Handler | None:
        return self.handlers.get(kind)

    def merged(self, other: App) -> App:
        """This app's handlers, replaced by ``other``'s where both name a kind."""
        return App(
            {**self.handlers, **other.handlers},
            {**self.queues, **other.queues},
            {**self.schedules, **other.schedules},
        )


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and check that it is an :class:`App`.

    The working directory comes first on the import path, as with ``python -m notifyq``:
    the ``notifyq`` console script would not find ``myapp.py`` beside the user otherwise
    (tests/acceptance/test_first_use.py)."""
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"invalid NOTIFYQ_APP={spec!r}: cannot import {module_name}: {exc}"
        ) from exc
    except ScheduleError as exc:  # app.schedule(...) refused a definition
        raise ConfigError(f"invalid NOTIFYQ_APP={spec!r}: {exc}") from exc
    except Exception as exc:  # the module's own code failed: a missing variable, a typo
        raise ConfigError(
            f"invalid NOTIFYQ_APP={spec!r}: importing {module_name} raised {_where(exc)}"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(
            f"invalid NOTIFYQ_APP={spec!r}: {attr} is {type(app).__name__}, expected a notifyq.App"
        )
    return app


def _where(exc: Exception) -> str:
    """``KeyError: 'API_KEY' (myapp.py, line 5)``: the error and the line of the user's
    code that raised it (for a SyntaxError, the line that does not parse)."""
    if isinstance(exc, SyntaxError):
        where = (os.path.basename(exc.filename or "?"), exc.lineno)
        return f"SyntaxError: {exc.msg} ({where[0]}, line {where[1]})"
    # The user's code: not Python's own, not an installed package's.
    installed = (sys.base_prefix, sys.prefix, "<frozen")
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not f.filename.startswith(installed)]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not own:
        return text
    return f"{text} ({os.path.basename(own[-1].filename)}, line {own[-1].lineno})"
