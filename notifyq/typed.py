"""Typed tasks: a function with annotated parameters, called through the queue.

    @app.task                                   # kind "images.resize" (module.qualname)
    def resize(image_id: int, width: int = 800) -> dict[str, int]:
        ...

    resize.enqueue(conn, image_id=1, width=800)                 # checked by mypy and pydantic
    resize.using(queue="images", priority="high").enqueue(conn, image_id=2)
    notifyq.chain(resize.new_task(image_id=3), publish.new_task(image_id=3))

The arguments are checked against the signature (pydantic, lax mode: ``"800"`` becomes
``800`` for an ``int``) before any SQL, so a wrong one raises :class:`InvalidTask` and never
aborts the caller's transaction; the payload is the arguments given, as a JSON object
(pydantic's JSON form: a date is ``"2026-12-31"``), so a person or plain SQL reads and
writes it. When the task runs, the payload is checked again (an ``INSERT`` from any client
can hold anything): a payload that does not fit ends the task with :class:`PayloadError`,
at once, since another attempt would read the same. A return value with an annotation is
stored in that annotation's JSON form.

Which producer runs the statement is the connection's business: a blocking connection
returns the id, an asyncio one an awaitable, and the trio :class:`notifyq.Client` an
awaitable too.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload

import pydantic
import typing_extensions

from notifyq import db, producers, spec, store
from notifyq.errors import InvalidTask, PayloadError

if TYPE_CHECKING:
    from notifyq.producers import AsyncConnection, SyncConnection

P = ParamSpec("P")
R = TypeVar("R", covariant=True)

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_SHOWN_PROBLEMS = 3
# pydantic reads a TypedDict of typing_extensions on every Python (typing's only from 3.12);
# built from a signature, so untyped here.
_TYPED_DICT: Any = typing_extensions.TypedDict


class HasDatabase(Protocol):
    """The trio :class:`notifyq.Client` (not imported here: the client and the app are
    siblings that import neither each other)."""

    @property
    def db(self) -> db.Database: ...


@dataclass(frozen=True, slots=True)
class Signature:
    """The check of a function's arguments, both ways: call -> payload, payload -> call."""

    kind: str
    parameters: inspect.Signature
    arguments: pydantic.TypeAdapter[dict[str, Any]]
    result: pydantic.TypeAdapter[Any] | None  # None: returned as is

    @classmethod
    def of(cls, kind: str, fn: Callable[..., Any]) -> Signature:
        parameters = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except NameError as exc:
            raise TypeError(f"task {kind!r}: cannot resolve an annotation: {exc}") from None
        fields: dict[str, Any] = {}
        for name, parameter in parameters.parameters.items():
            if parameter.kind not in _NAMED:
                raise TypeError(
                    f"task {kind!r}: parameter {name!r} must be nameable (no *args, **kwargs "
                    f"or positional-only): the payload is an object of named arguments"
                )
            hint = hints.get(name, Any)
            fields[name] = hint if parameter.default is parameter.empty else _optional(hint)
        # A TypedDict of the parameters: extra keys are refused, omitted defaults stay
        # omitted (the function's own default applies when the task runs).
        shape: Any = _TYPED_DICT(f"{fn.__name__}_arguments", fields)
        shape.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
        returned = hints.get("return", Any)
        try:
            result = None if returned is Any else pydantic.TypeAdapter(returned)
            return cls(kind, parameters, pydantic.TypeAdapter(shape), result)
        except pydantic.PydanticSchemaGenerationError as exc:
            # A type pydantic cannot read from JSON or write to it (a socket, a lock).
            raise TypeError(f"task {kind!r}: an annotation has no JSON form: {exc}") from None

    def payload(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The checked arguments of a call, as the JSON object the task carries."""
        try:
            given = self.parameters.bind(*args, **kwargs).arguments
        except TypeError as exc:
            raise InvalidTask(f"arguments of {self.kind}", dict(kwargs), str(exc)) from None
        try:
            checked = self.arguments.validate_python(given)
        except pydantic.ValidationError as exc:
            raise InvalidTask(f"arguments of {self.kind}", given, _problems(exc)) from None
        written: dict[str, Any] = self.arguments.dump_python(checked, mode="json")
        return written

    def call_arguments(self, payload: Any) -> dict[str, Any]:
        """The payload of a task about to run, checked: the function's keyword arguments."""
        try:
            return self.arguments.validate_python(payload)
        except pydantic.ValidationError as exc:
            shown = repr(payload)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise PayloadError(
                f"invalid arguments of {self.kind} {shown}: {_problems(exc)}"
            ) from None

    def stored(self, value: Any) -> Any:
        """The return value in its annotation's JSON form (a date as ISO text)."""
        return value if self.result is None else self.result.dump_python(value, mode="json")


def _optional(hint: Any) -> Any:
    return typing_extensions.NotRequired[hint]


def _problems(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    shown = [
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
        for e in errors[:_SHOWN_PROBLEMS]
    ]
    more = len(errors) - _SHOWN_PROBLEMS
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def default_kind(fn: Callable[..., Any]) -> str:
    """``module.qualname``: stable while the function keeps its name and module, and unlike
    the bare name it does not collide between two modules' ``send``."""
    return f"{fn.__module__}.{fn.__qualname__}"


def handler_of(
    fn: Callable[..., Any], signature: Signature, current: ContextVar[Any]
) -> Callable[[Any], Any]:
    """The handler the engine runs: a ``def`` for a ``def`` (a worker thread), an ``async
    def`` for an ``async def`` (trio or asyncio, as registered); ``current`` holds the
    attempt while the function runs (``notifyq.app.current_task``)."""
    if inspect.iscoroutinefunction(fn):

        async def run_async(task: Any) -> Any:
            token = current.set(task)
            try:
                return signature.stored(await fn(**signature.call_arguments(task.payload)))
            finally:
                current.reset(token)

        return run_async

    def run(task: Any) -> Any:
        token = current.set(task)
        try:
            return signature.stored(fn(**signature.call_arguments(task.payload)))
        finally:
            current.reset(token)

    return run


@dataclass(frozen=True, slots=True)
class TypedTask(Generic[P, R]):
    """What ``@app.task`` returns: the function (still callable as such) and its checked
    ways into the queue."""

    fn: Callable[P, R]
    signature: Signature
    options: Mapping[str, Any] = field(default_factory=dict)  # spec.PlainOptions

    @property
    def kind(self) -> str:
        return self.signature.kind

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The function itself, run here (no queue): for tests and direct use."""
        return self.fn(*args, **kwargs)

    def using(self, **options: Unpack[spec.PlainOptions]) -> TypedTask[P, R]:
        """The same task with other options (queue, priority, delay, run_at, ...: those of
        :func:`notifyq.new_task` but ``unique_key``), checked when a task is made."""
        return TypedTask(self.fn, self.signature, {**self.options, **options})

    def new_task(self, *args: P.args, **kwargs: P.kwargs) -> spec.NewTask:
        """One checked task of these arguments: for :func:`notifyq.chain`, ``group``,
        ``chord`` and :func:`notifyq.enqueue_many`."""
        return self._new(None, args, kwargs)

    def _new(
        self, unique_key: str | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> spec.NewTask:
        payload = self.signature.payload(args, kwargs)
        options: spec.PlainOptions = dict(self.options)  # type: ignore[assignment]
        return spec.new_task(self.kind, payload, unique_key=unique_key, **options)

    @overload
    def enqueue(self, conn: SyncConnection, /, *args: P.args, **kwargs: P.kwargs) -> int: ...
    @overload
    def enqueue(
        self, conn: AsyncConnection | HasDatabase, /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[int]: ...
    @overload
    def enqueue(self, conn: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any: ...
    def enqueue(self, conn: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Add the task in ``conn``'s current transaction and return its id: ``conn`` is
        any connection :func:`notifyq.enqueue` takes (blocking: the id; asyncio: an
        awaitable) or a trio :class:`notifyq.Client` (an awaitable; committed at once)."""
        return _add(conn, self._new(None, args, kwargs))

    @overload
    def enqueue_unique(
        self, conn: SyncConnection, unique_key: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> int | None: ...
    @overload
    def enqueue_unique(
        self,
        conn: AsyncConnection | HasDatabase,
        unique_key: str,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[int | None]: ...
    @overload
    def enqueue_unique(
        self, conn: Any, unique_key: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> Any: ...
    def enqueue_unique(
        self, conn: Any, unique_key: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> Any:
        """:meth:`enqueue` unless a live task of the queue holds ``unique_key``: then
        nothing is added and the answer is None (README "Unique tasks")."""
        return _add(conn, self._new(unique_key, args, kwargs))


def _add(conn: Any, task: spec.NewTask) -> Any:
    client = sys.modules.get("notifyq.client")
    if client is not None and isinstance(conn, client.Client):
        return _add_on_pool(conn.db, task)
    return producers.add(conn, task)


async def _add_on_pool(database: db.Database, task: spec.NewTask) -> int | None:
    # One answer on every path: None when a live task holds the key (the client's own
    # enqueue returns that task's id instead).
    added = await store.enqueue(database, task=task)
    return None if added.duplicate else added.id


def typed_task(
    fn: Callable[P, R], *, kind: str | None, options: spec.PlainOptions
) -> TypedTask[P, R]:
    """A typed task of ``fn`` (its signature checked now: a bad one raises TypeError)."""
    name = default_kind(fn) if kind is None else kind
    if len(name) > spec.MAX_NAME_CHARS:
        raise ValueError(
            f"kind must be 1-{spec.MAX_NAME_CHARS} characters, got {name!r}: set kind="
        )
    return TypedTask(fn, Signature.of(name, fn), dict(options))
