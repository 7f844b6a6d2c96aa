"""What the HTTP side learns from the service's own LISTEN connection.

The listener hands notifications to :class:`LiveFeed`, which fans them out to the
``/events`` subscribers (server-sent events). ``notifyq_done`` says every task's end, of
every process: thousands a second in a busy fleet, each one a trio wake-up in every
listening process (measured: a third of a `serve` process's drain throughput). So the
feed asks for that channel only while some ``/events`` stream is open; the service's
listener follows :meth:`LiveFeed.wanted_channels` as it changes.

Fan-out costs the workers little whatever the number of streams:

- :meth:`LiveFeed.on_notification` runs in the listener's loop and only notes the hint
  (an id in a bounded set); it never awaits and never touches a subscriber.
- :meth:`LiveFeed.run` wakes at most once per window (``FLUSH_WINDOW_S``, longer with many
  streams: see :meth:`LiveFeed.window`), asks the table
  about every id noted in the window in one statement, encodes one message and hands the
  same bytes to every subscriber without waiting: a subscriber that has not read its last
  ``SUBSCRIBER_BUFFER`` messages is cut off (its browser reconnects and reloads).
- A notification is only a hint, since any database role can NOTIFY any channel: a `task`
  event is published only for a task the table says ended (with the table's status, queue
  and kind), a `cancel_requested` only for a task whose cancel the table records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import trio

from notifyq import db, errors, logs, store
from notifyq.vocabulary import CANCEL_CHANNEL, DONE_CHANNEL, QUEUE_CHANNEL

log = logs.get("notifyq.web")

FLUSH_WINDOW_S = 0.15  # notifications collected into one message per subscriber
# Each message costs a write per stream (measured: ~0.3 ms of the process's time each, the
# workers' time), so with many streams the window grows: about a thousand writes a second
# at most, whatever the number of streams up to a thousand.
WINDOW_PER_STREAM_S = 0.001
MAX_WINDOW_S = 1.0
# Messages a slow subscriber may fall behind by before its stream is closed (the browser's
# EventSource reconnects by itself and the page fetches a fresh picture).
SUBSCRIBER_BUFFER = 64
# Task ends listed per message; past that a window's message ends with `resync` (read the
# table) instead: the query per window and the bytes per subscriber stay bounded.
MAX_LISTED_TASKS = 100
MAX_QUEUES = 100  # `queued` events per message
ENDED_WITHIN_S = 60.0  # a task-end hint about an older end is not news: not published
BIGINT_MAX = 2**63 - 1
RESYNC = b"event: resync\ndata: {}\n\n"
_DIGITS = re.compile(r"[0-9]{1,19}")


def encode(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _task_id(payload: str) -> int | None:
    """The id a notifyq_done payload names, or None when it names none."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    task_id = data.get("id") if isinstance(data, dict) else None
    if type(task_id) is int and 0 < task_id <= BIGINT_MAX:
        return task_id
    return None


class Subscription:
    """One open ``/events`` stream's place in the feed; :meth:`close` gives it back.

    Also given back when the object is dropped, so a stream whose body never started (the
    client left first) does not keep its place.
    """

    def __init__(
        self,
        feed: LiveFeed,
        send: trio.MemorySendChannel[bytes],
        receive: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        self._feed = feed
        self._send = send
        self.receive = receive
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._feed._remove(self._send)
        self._send.close()
        self.receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class LiveFeed:
    """Receives the listener's notifications and serves the SSE subscribers."""

    def __init__(self, *, window_s: float = FLUSH_WINDOW_S) -> None:
        self.window_s = window_s
        self._subscribers: set[trio.MemorySendChannel[bytes]] = set()
        self._channels_changed = trio.Event()
        self.listening: frozenset[str] = frozenset()
        self.closed = False
        self._listening_changed = trio.Event()
        self.bad_payloads = 0
        self.on_change: Callable[[], None] = lambda: None
        # The hints of the current window (dicts: ordered sets), bounded.
        self._ended: dict[int, None] = {}
        self._cancels: dict[int, None] = {}
        self._queues: dict[str, None] = {}
        self._overflowed = False
        self._bad_example: str | None = None
        self._wake = trio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def wanted_channels(self) -> tuple[str, ...]:
        """Channels to LISTEN to besides the service's own: task ends, while watched."""
        return (DONE_CHANNEL,) if self._subscribers else ()

    async def wait_channels_changed(self) -> None:
        await self._channels_changed.wait()

    def now_listening(self, channels: frozenset[str]) -> None:
        self.listening = channels
        self._listening_changed.set()
        self._listening_changed = trio.Event()

    async def wait_listening(self, channel: str) -> None:
        """Until the service's connection LISTENs to ``channel`` (or the feed closes)."""
        while channel not in self.listening and not self.closed:
            await self._listening_changed.wait()

    def _subscribers_changed(self, before: int) -> None:
        if bool(before) != bool(self._subscribers):
            self._channels_changed.set()
            self._channels_changed = trio.Event()

    def window(self) -> float:
        """How long notifications are collected into one message, as of now."""
        per_streams = min(MAX_WINDOW_S, len(self._subscribers) * WINDOW_PER_STREAM_S)
        return max(self.window_s, per_streams)

    # --- the listener's side: note the hint, nothing more ---------------------------------

    def on_notification(self, channel: str, payload: str) -> None:
        if channel == DONE_CHANNEL:
            task_id = _task_id(payload)
            if task_id is None:
                # Counted and logged once per window; never kills the listener.
                self.bad_payloads += 1
                self._bad_example = payload[:100]
            elif self._subscribers:
                self._note(self._ended, task_id, MAX_LISTED_TASKS)
        elif channel == QUEUE_CHANNEL:
            self._note(self._queues, payload[:128], MAX_QUEUES)
        elif channel == CANCEL_CHANNEL:
            if _DIGITS.fullmatch(payload) and 0 < int(payload) <= BIGINT_MAX and self._subscribers:
                self._note(self._cancels, int(payload), MAX_LISTED_TASKS)
        else:
            return
        self._wake.set()

    def _note(self, hints: dict[Any, None], key: Any, bound: int) -> None:
        if key in hints or len(hints) < bound:
            hints[key] = None
        else:
            self._overflowed = True

    # --- the feed's own task: one message per window ---------------------------------------

    async def run(self, database: db.Database) -> None:
        """Publish what each window's notifications say, as the table confirms it."""
        while True:
            await self._wake.wait()
            await trio.sleep(self.window())  # let the window fill
            self._wake = trio.Event()
            ended, cancels, queues = list(self._ended), list(self._cancels), list(self._queues)
            overflowed, bad = self._overflowed, self._bad_example
            self._ended, self._cancels, self._queues = {}, {}, {}
            self._overflowed, self._bad_example = False, None
            if bad is not None:
                log.warning("notification.bad_payload", channel=DONE_CHANNEL, example=bad)
            # Something changed: the next reader of the counts gets fresh ones (once a window).
            self.on_change()
            if not self._subscribers:
                continue
            message = await self._message(database, ended, cancels, queues, overflowed)
            if message:
                self._deliver(message)

    async def _message(
        self,
        database: db.Database,
        ended: list[int],
        cancels: list[int],
        queues: list[str],
        overflowed: bool,
    ) -> bytes:
        # In the order of a task's life: queues woken, cancels asked, tasks ended.
        parts = [encode("queued", {"queue": queue}) for queue in queues]
        if ended or cancels:
            try:
                rows = await store.confirm_events(
                    database, ended=ended, cancel_requested=cancels, within_s=ENDED_WITHIN_S
                )
            except errors.NotifyqError as exc:
                log.warning("events.confirm_failed", error=str(exc).splitlines()[0])
                rows, overflowed = {}, True  # tell the subscribers to read the table
            for task_id in cancels:
                row = rows.get(task_id)
                if row is not None and row.cancel_requested:
                    parts.append(encode("cancel_requested", {"id": task_id}))
            for task_id in ended:
                row = rows.get(task_id)
                if row is not None and row.ended:
                    data = {"id": row.id, "status": row.status, "queue": row.queue}
                    parts.append(encode("task", data | {"kind": row.kind}))
        if overflowed:
            parts.append(RESYNC)
        return b"".join(parts)

    def _deliver(self, message: bytes) -> None:
        """The same bytes to every subscriber, without waiting for any."""
        for send in list(self._subscribers):
            try:
                send.send_nowait(message)
            except trio.WouldBlock:
                # Too slow to keep up: end its stream rather than buffer without bound.
                self._remove(send)
                send.close()
                log.info("events.subscriber_dropped", why="fell behind", buffer=SUBSCRIBER_BUFFER)
            except trio.ClosedResourceError:
                self._remove(send)

    # --- subscribers -----------------------------------------------------------------------

    def open(
        self, buffer: int = SUBSCRIBER_BUFFER, *, limit: int | None = None
    ) -> Subscription | None:
        """A place for one stream, or None when ``limit`` streams are open already."""
        if limit is not None and len(self._subscribers) >= limit:
            return None
        send, receive = trio.open_memory_channel[bytes](buffer)
        before = len(self._subscribers)
        self._subscribers.add(send)
        self._subscribers_changed(before)
        return Subscription(self, send, receive)

    def _remove(self, send: trio.MemorySendChannel[bytes]) -> None:
        before = len(self._subscribers)
        self._subscribers.discard(send)
        self._subscribers_changed(before)

    @contextmanager
    def subscribe(
        self, buffer: int = SUBSCRIBER_BUFFER
    ) -> Iterator[trio.MemoryReceiveChannel[bytes]]:
        """A stream's messages, without a limit (for in-process readers and tests)."""
        subscription = self.open(buffer)
        assert subscription is not None  # no limit
        with subscription:
            yield subscription.receive

    def close_all(self) -> None:
        """End every open stream (the process is stopping)."""
        self.closed = True
        self._listening_changed.set()
        before = len(self._subscribers)
        for send in list(self._subscribers):
            send.close()
        self._subscribers.clear()
        self._subscribers_changed(before)
