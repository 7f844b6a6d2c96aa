"""What the HTTP side learns from the service's own LISTEN connection.

The listener hands notifications to :class:`LiveFeed`, which fans them out to the
``/events`` subscribers (server-sent events). ``notifyq_done`` says every task's end, of
every process: thousands a second in a busy fleet, each one a trio wake-up in every
listening process (measured: a third of a `serve` process's drain throughput). So the
feed asks for that channel only while some ``/events`` stream is open; the service's
listener follows :meth:`LiveFeed.wanted_channels` as it changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from notifyq import logs

log = logs.get("notifyq.web")

# Events a slow subscriber may fall behind by before its stream is closed (the browser's
# EventSource reconnects by itself and the page fetches a fresh picture).
SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # the SSE event name: "task", "queued" or "cancel_requested"
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data)}\n\n".encode()


class LiveFeed:
    """Receives the listener's notifications and serves the SSE subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self._channels_changed = trio.Event()
        self.listening: frozenset[str] = frozenset()
        self.closed = False
        self._listening_changed = trio.Event()
        self.bad_payloads = 0
        self.on_change: Callable[[], None] = lambda: None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def wanted_channels(self) -> tuple[str, ...]:
        """Channels to LISTEN to besides the service's own: task ends, while watched."""
        return ("notifyq_done",) if self._subscribers else ()

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

    def on_notification(self, channel: str, payload: str) -> None:
        if channel == "notifyq_done":
            try:
                data = json.loads(payload)
                task = {
                    "id": int(data["id"]),
                    "status": str(data["status"]),
                    "queue": str(data["queue"]),
                    "kind": str(data["kind"]),
                }
            except (ValueError, KeyError, TypeError):
                # A bad payload is logged and dropped; it never kills the listener.
                self.bad_payloads += 1
                log.warning("notification.bad_payload", channel=channel, payload=payload[:100])
                return
            self.publish(Event("task", task))
        elif channel == "notifyq":
            self.publish(Event("queued", {"queue": payload}))
        elif channel == "notifyq_cancel" and payload.isdigit():
            self.publish(Event("cancel_requested", {"id": int(payload)}))

    def publish(self, event: Event) -> None:
        self.on_change()
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                # Too slow to keep up: end its stream rather than buffer without bound.
                before = len(self._subscribers)
                self._subscribers.discard(send)
                self._subscribers_changed(before)
                send.close()
                log.info("events.subscriber_dropped", why="fell behind", buffer=SUBSCRIBER_BUFFER)
            except trio.ClosedResourceError:
                before = len(self._subscribers)
                self._subscribers.discard(send)
                self._subscribers_changed(before)

    def close_all(self) -> None:
        """End every open stream (the process is stopping)."""
        self.closed = True
        self._listening_changed.set()
        before = len(self._subscribers)
        for send in list(self._subscribers):
            send.close()
        self._subscribers.clear()
        self._subscribers_changed(before)

    @contextmanager
    def subscribe(
        self, buffer: int = SUBSCRIBER_BUFFER
    ) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](buffer)
        before = len(self._subscribers)
        self._subscribers.add(send)
        self._subscribers_changed(before)
        try:
            yield receive
        finally:
            before = len(self._subscribers)
            self._subscribers.discard(send)
            self._subscribers_changed(before)
            send.close()
            receive.close()
