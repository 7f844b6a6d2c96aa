"""What the HTTP side learns from the service's own LISTEN connection.

The listener hands every notification to :class:`LiveFeed`, which

- fans task events out to the ``/events`` subscribers (server-sent events), and
- counts task ends per second and per minute, for throughput on ``/stats`` and the page.

Nothing here reads the tasks table: the feed costs one dictionary lookup per notification
when nobody is subscribed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from notifyq import logs

log = logs.get("notifyq.web")

ENDED = ("done", "error", "cancelled")
# Events a slow subscriber may fall behind by before its stream is closed (the browser's
# EventSource reconnects by itself and the page fetches a fresh picture).
SUBSCRIBER_BUFFER = 1000
HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # the SSE event name: "task", "queued" or "cancel_requested"
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data)}\n\n".encode()


class EndCounter:
    """Task ends per second (last minute) and per minute (last hour), fleet-wide."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._seconds: dict[int, int] = {}
        self._minutes: dict[int, dict[str, int]] = {}
        self.since_start: dict[str, int] = dict.fromkeys(ENDED, 0)

    def record(self, status: str) -> None:
        now = self._clock()
        second, minute = int(now), int(now // 60)
        self._seconds[second] = self._seconds.get(second, 0) + 1
        bucket = self._minutes.setdefault(minute, dict.fromkeys(ENDED, 0))
        bucket[status] = bucket.get(status, 0) + 1
        self.since_start[status] = self.since_start.get(status, 0) + 1
        if len(self._seconds) > 120:
            self._trim(second, minute)

    def _trim(self, second: int, minute: int) -> None:
        for s in [s for s in self._seconds if s <= second - 60]:
            del self._seconds[s]
        for m in [m for m in self._minutes if m <= minute - 60]:
            del self._minutes[m]

    def last_minute(self) -> int:
        """Ends in the last 60 whole seconds (the current second excluded)."""
        now = int(self._clock())
        return sum(n for s, n in self._seconds.items() if now - 60 <= s < now)

    def per_minute(self) -> list[dict[str, Any]]:
        """The last hour, one entry per minute (oldest first; minutes without ends are 0)."""
        current = int(self._clock() // 60)
        out = []
        for minute in range(current - 59, current + 1):
            bucket = self._minutes.get(minute, {})
            out.append(
                {
                    "minute": minute * 60,
                    "ended": sum(bucket.values()),
                    "errors": bucket.get("error", 0),
                }
            )
        return out


class LiveFeed:
    """Receives the listener's notifications; serves SSE subscribers and the end counter."""

    # Listened to in addition to the service's own channels.
    channels: tuple[str, ...] = ("notifyq_done",)

    def __init__(self) -> None:
        self.ends = EndCounter()
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self.bad_payloads = 0
        self.on_change: Callable[[], None] = lambda: None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def on_notification(self, channel: str, payload: str) -> None:
        if channel == "notifyq_done":
            try:
                data = json.loads(payload)
                status = str(data["status"])
                task = {
                    "id": int(data["id"]),
                    "status": status,
                    "queue": str(data["queue"]),
                    "kind": str(data["kind"]),
                }
            except (ValueError, KeyError, TypeError):
                # A bad payload is logged and dropped; it never kills the listener.
                self.bad_payloads += 1
                log.warning("notification.bad_payload", channel=channel, payload=payload[:100])
                return
            self.ends.record(status)
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
                self._subscribers.discard(send)
                send.close()
                log.info("events.subscriber_dropped", why="fell behind", buffer=SUBSCRIBER_BUFFER)
            except trio.ClosedResourceError:
                self._subscribers.discard(send)

    def close_all(self) -> None:
        """End every open stream (the process is stopping)."""
        for send in list(self._subscribers):
            send.close()
        self._subscribers.clear()

    @contextmanager
    def subscribe(self, buffer: int = SUBSCRIBER_BUFFER) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

