"""The listener stage: one LISTEN connection per process, kept up, fanned out to subscribers.

:class:`Listener` is the stage; the connection it keeps up (reopened after every loss) is a
:class:`~notifyq.listen.ListenConnection`.

Stages subscribe to a channel (``subscribe``) or to "notifications may have been missed"
(``on_gap``: after every (re)connect and when the buffer overflowed), so nobody assigns
callbacks into another stage. A NOTIFY round trip on the connection itself, every second,
catches the silent failures the driver cannot see. A notification is only a hint: the
subscribers act on what the table says.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable
from typing import Protocol

import trio

from notifyq import db, errors, listen, logs, store
from notifyq.settings import Settings
from notifyq.vocabulary import CANCEL_CHANNEL as CANCEL_CHANNEL
from notifyq.vocabulary import LIMITS_CHANNEL as LIMITS_CHANNEL
from notifyq.vocabulary import PROBE_CHANNEL_PREFIX
from notifyq.vocabulary import QUEUE_CHANNEL as QUEUE_CHANNEL

log = logs.get("notifyq.service")

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0


class NotificationSink(Protocol):
    """Something else in the process that wants the listener's notifications (the web)."""

    def wanted_channels(self) -> tuple[str, ...]:
        """Channels to listen to besides the service's own, as of now."""
        ...

    async def wait_channels_changed(self) -> None: ...

    def now_listening(self, channels: frozenset[str]) -> None:
        """The extra channels are LISTENed to now (after a change, or a reconnect)."""
        ...

    def on_notification(self, channel: str, payload: str) -> None: ...


class Listener:
    def __init__(
        self, database: db.Database, settings: Settings, *, sink: NotificationSink | None = None
    ) -> None:
        self.db = database
        self.settings = settings
        self.sink = sink
        self.health = listen.Health()
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self._gap_subscribers: list[Callable[[], None]] = []
        self._probe_channel = f"{PROBE_CHANNEL_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self._probe_back = trio.Event()

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for every notification on ``channel``."""
        self._subscribers.setdefault(channel, []).append(callback)

    def on_gap(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever notifications may have been missed."""
        self._gap_subscribers.append(callback)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep one LISTEN connection up; reconnect with backoff and jitter when it dies.

        ``task_status.started()`` is called once, when the first connection is up, or at
        once under NO_LISTEN, which opens no LISTEN connection at all.
        """
        if self.settings.no_listen:
            self.health.listen_enabled = False
            log.warning(
                "listener.disabled",
                why="NO_LISTEN is set: no LISTEN connection",
                effect=f"new tasks are found by the FETCH_INTERVAL sweep (every "
                f"{self.settings.fetch_interval_s:g} s) and when a worker frees up; a cancel "
                "reaches a running task at its next heartbeat (LEASE/3)",
            )
            task_status.started()
            return
        failures = 0
        connected_once = trio.Event()
        while True:
            try:
                await self._listen(failures, connected_once, task_status)
            except* errors.DatabaseUnavailable as group:
                lost = group.exceptions[0]
                self.health.listener_connected = False
                failures += 1
                delay = min(5.0, 0.05 * 2 ** min(failures, 7)) * random.uniform(0.5, 1.0)
                log.warning("listener.lost", error=str(lost), retry_in_s=round(delay, 3))
                await trio.sleep(delay)

    async def _listen(
        self, failures: int, connected_once: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        channels = [*self._subscribers, self._probe_channel]
        url = self.settings.listen_url or self.db.dsn
        async with listen.open_listener(
            self.db.loop, url, channels, at_once=self._dispatch
        ) as conn:
            self.health.listener_connected = True
            if connected_once.is_set():
                self.health.reconnects += 1
                log.info("listener.reconnected", after_failures=failures)
            else:
                log.info("listener.connected", channels=channels[:-1], after_failures=failures)
                connected_once.set()
                task_status.started()
            # Notifications sent while nobody listened are lost.
            self._gap()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_probe, conn)
                if self.sink is not None:
                    nursery.start_soon(self._follow_sink, conn, self.sink)
                async for note in conn:
                    self._dispatch(note)
                    if conn.overflowed:
                        conn.overflowed = False
                        self._gap()
            raise listen.ListenerLost("the LISTEN connection closed")

    def _gap(self) -> None:
        for callback in self._gap_subscribers:
            callback()

    def _dispatch(self, note: listen.Notification) -> None:
        if note.channel == self._probe_channel:
            self._probe_back.set()
            return
        if note.channel == QUEUE_CHANNEL:
            log.debug("notification", queue=note.payload)
        for callback in self._subscribers.get(note.channel, ()):
            callback(note.payload)
        if self.sink is not None:
            self.sink.on_notification(note.channel, note.payload)

    async def _follow_sink(self, conn: listen.ListenConnection, sink: NotificationSink) -> None:
        """LISTEN to the sink's extra channels while it wants them, and only then."""
        listening: set[str] = set()
        while True:
            wanted = set(sink.wanted_channels())
            for channel in sorted(wanted - listening):
                await conn.listen(channel)
            for channel in sorted(listening - wanted):
                await conn.unlisten(channel)
            listening = wanted
            sink.now_listening(frozenset(listening))
            await sink.wait_channels_changed()

    async def _serve_probe(self, conn: listen.ListenConnection) -> None:
        """A NOTIFY round trip on the listening connection itself, every second.

        The driver reports a closed socket at once; this catches the silent cases (a
        network path that drops packets, a hung backend, a server turned read-only).
        """
        while True:
            self._probe_back = trio.Event()
            with trio.move_on_after(PROBE_TIMEOUT_S):
                await store.send_probe(conn, self._probe_channel)
                await self._probe_back.wait()
            if not self._probe_back.is_set():
                raise listen.ListenerLost(f"no probe notification within {PROBE_TIMEOUT_S:g} s")
            if conn.read_only():
                # A demoted primary keeps its sessions (until Patroni restarts it) but no
                # longer sees a write: reconnect, to the writable server of the URL.
                raise listen.ListenerLost("the server is read-only now (a standby?)")
            self.health.last_probe_ok = trio.current_time()
            await trio.sleep(PROBE_INTERVAL_S)
