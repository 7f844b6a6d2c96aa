"""LISTEN on a dedicated connection, with notifications received on a trio channel.

Part of the driver wrapper (:mod:`notifyq.db`): the same trio-asyncio loop, one hop per
call, and the driver's errors mapped the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import trio
import trio_asyncio

from notifyq import errors
from notifyq.db import CONNECTION_ERRORS, READ_ONLY_ERRORS, T


@dataclass(frozen=True, slots=True)
class Notification:
    channel: str
    payload: str


@dataclass
class Health:
    """What /health and the logs report about this process's LISTEN connection.

    Written by the one stage that keeps the connection up (:mod:`notifyq.engine.listener`),
    read by the HTTP side. It lives here, with the connection, because it describes the
    connection, and because both of those import this module: the engine never reaches
    the HTTP side, and the HTTP side reads it without reaching into an engine stage.
    """

    listener_connected: bool = False
    listen_enabled: bool = True  # False under NO_LISTEN: no LISTEN connection, no probe
    last_probe_ok: float = -1.0  # trio clock
    reconnects: int = 0


class ListenerLost(errors.DatabaseUnavailable):
    """The LISTEN connection died; notifications sent meanwhile are lost."""


_LOST = Notification("", "")


class ListenConnection:
    """Notifications of one dedicated connection, received on a trio channel.

    Iterate it to receive :class:`Notification`; iteration raises :class:`ListenerLost`
    as soon as the connection dies (the driver's termination callback fires within a few
    milliseconds of the backend going away).

    One connection runs one operation at a time: LISTEN, UNLISTEN and statements (the
    probe, the events feed's channel changes) take turns through a lock, never failing with
    "another operation is in progress". Receiving notifications takes no turn.
    """

    def __init__(
        self,
        loop: trio_asyncio.TrioEventLoop,
        conn: asyncpg.Connection,
        receive: trio.MemoryReceiveChannel[Notification],
        callback: Callable[[object, int, str, str], None],
    ) -> None:
        self._loop = loop
        self._conn = conn
        self._receive = receive
        self._callback = callback
        self._turn = trio.Lock()
        self.overflowed = False

    async def listen(self, channel: str) -> None:
        """LISTEN to one more channel on this connection."""
        await self._call(lambda: self._conn.add_listener(channel, self._callback))

    async def unlisten(self, channel: str) -> None:
        await self._call(lambda: self._conn.remove_listener(channel, self._callback))

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one operation on the connection, after any other has finished."""
        async with self._turn:
            try:
                return await self._loop.run_aio_coroutine(operation())  # type: ignore[no-any-return]
            except CONNECTION_ERRORS + READ_ONLY_ERRORS as exc:
                raise ListenerLost(str(exc) or type(exc).__name__) from exc

    def read_only(self) -> bool:
        """Whether the server now takes no writes (a standby, a demoted primary), as it
        reported last (PostgreSQL 14+ reports both settings to the client as they change,
        a reload included). Nothing written there is ever notified: the listener must go
        to the writable server."""
        settings = self._conn.get_settings()
        return "on" in (
            getattr(settings, "in_hot_standby", "off"),
            getattr(settings, "default_transaction_read_only", "off"),
        )

    def __aiter__(self) -> ListenConnection:
        return self

    async def __anext__(self) -> Notification:
        try:
            note = await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if note is _LOST:
            raise ListenerLost("the LISTEN connection was lost")
        return note

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement on the listening connection itself (used by the probe)."""
        return await self._call(lambda: self._conn.execute(query, *args))


@asynccontextmanager
async def open_listener(
    loop: trio_asyncio.TrioEventLoop,
    dsn: str,
    channels: Sequence[str],
    *,
    buffer: int = 10_000,
    at_once: Callable[[Notification], None] | None = None,
) -> AsyncIterator[ListenConnection]:
    """The listening connection. With ``at_once``, each notification is handed to it as
    it arrives, in the driver's callback (on this trio thread, so it may ring trio events),
    and is not queued: a claimer is woken one trio task switch sooner (~0.1-0.2 ms of the
    pickup). A notification that ``at_once`` raises on is queued instead, so that the
    consumer meets the same error in its own task (a consumer that dispatches it again
    calls the callbacks that ran before the error once more: they must be hints, safe to
    repeat, as notifyq's are)."""
    send, receive = trio.open_memory_channel[Notification](math.inf if buffer <= 0 else buffer)
    closing = False
    listener: ListenConnection | None = None

    def on_notification(_conn: object, _pid: int, channel: str, payload: str) -> None:
        # Runs on the loop, which is this trio thread: send_nowait is safe here.
        if closing:
            return  # a late delivery while the connection closes: nobody reads it now
        note = Notification(channel, payload)
        if at_once is not None:
            try:
                at_once(note)
            except Exception:  # queued below: the consumer's own dispatch raises it
                pass
            else:
                return
        try:
            send.send_nowait(note)
        except trio.WouldBlock:
            # The consumer is far behind. Dropping is safe as long as someone sweeps;
            # the flag tells the consumer to do so.
            if listener is not None:
                listener.overflowed = True
        except trio.ClosedResourceError:
            pass

    def on_termination(_conn: object) -> None:
        if closing:
            return  # asyncpg calls this on our own close too
        try:
            send.send_nowait(_LOST)
        except (trio.WouldBlock, trio.ClosedResourceError):
            if listener is not None:
                listener.overflowed = True

    try:
        conn = await loop.run_aio_coroutine(asyncpg.connect(dsn, statement_cache_size=0))
    except CONNECTION_ERRORS as exc:
        raise ListenerLost(str(exc) or type(exc).__name__) from exc
    try:
        conn.add_termination_listener(on_termination)
        for channel in channels:
            await loop.run_aio_coroutine(conn.add_listener(channel, on_notification))
        listener = ListenConnection(loop, conn, receive, on_notification)
        yield listener
    except CONNECTION_ERRORS as exc:
        raise ListenerLost(str(exc) or type(exc).__name__) from exc
    finally:
        closing = True
        send.close()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(2) as cleanup:
                with contextlib.suppress(*CONNECTION_ERRORS):  # already gone: nothing to release
                    await loop.run_aio_coroutine(conn.close())
            if cleanup.cancelled_caught:
                conn.terminate()
