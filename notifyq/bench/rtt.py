"""`--rtt D`: a delaying TCP proxy between every client of a benchmark and its database, so
that a loopback server behaves like one a network hop away (no kernel module such as
``netem`` is needed).

The proxy runs in a subprocess of its own (``python -m notifyq.bench.rtt``), so that its
work never waits for the benchmark's interpreter lock (the in-process notifyq drain holds it
most of the time; a thread in that process would add up to ``sys.getswitchinterval()``, 5
ms, to a delay). It listens on 127.0.0.1 and connects each accepted client to the server (a
TCP address or a Unix socket). Every chunk of bytes read from one side is sent to the other
``D / 2`` after it was read, as a link with that one-way latency would: the round trip grows
by D. Bytes keep their order within a direction; the two directions of a connection, and
different connections, are independent (each direction has a reader thread and a writer
thread: a chunk waits for its own due time only, never behind another connection's).
Delays are slept with ``time.sleep`` (a nanosleep, about 0.1 ms late here), not on an event
loop's timer, which rounds every wait up to a whole millisecond.

:func:`open_proxied` starts it and rewrites a DSN to go through it; every peer of `bench
peers` and every notifyq connection then share the same proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio

CHUNK = 65536
STARTUP_TIMEOUT_S = 10.0


def target_of(dsn: str) -> str:
    """Where the server of ``dsn`` listens: ``HOST:PORT``, or the path of its Unix socket."""
    parts = urlsplit(dsn)
    params = dict(parse_qsl(parts.query))
    host = params.get("host") or parts.hostname or "localhost"
    port = params.get("port") or (str(parts.port) if parts.port else "5432")
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return f"{host}:{port}"


def through(dsn: str, port: int) -> str:
    """``dsn`` rewritten to reach the server through a proxy on 127.0.0.1:``port``."""
    parts = urlsplit(dsn)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port", "sslmode")]
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    # The proxy speaks plain TCP to the client: no TLS negotiation round trip.
    query = urlencode([*params, ("sslmode", "disable")])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _connect(target: str) -> socket.socket:
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target)
        return sock
    host, _, port = target.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _direction(src: socket.socket, dst: socket.socket, one_way_s: float) -> list[threading.Thread]:
    """A reader that stamps each chunk with its due time, a writer that sends it then."""
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        try:
            while data := src.recv(CHUNK):
                chunks.put((time.monotonic() + one_way_s, data))
        except OSError:
            pass  # the other side closed it: the writer ends at the empty chunk below
        chunks.put((time.monotonic() + one_way_s, b""))

    def write() -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        # Either end closed: close both, which ends the other direction's reader too.
        for sock in (dst, src):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    return [threading.Thread(target=f, daemon=True) for f in (read, write)]


def serve(listener: socket.socket, target: str, rtt_s: float) -> None:
    """Accept clients forever; each one gets its own connection to ``target``."""
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            server = _connect(target)
        except OSError:
            client.close()
            continue
        threads = _direction(client, server, rtt_s / 2) + _direction(server, client, rtt_s / 2)
        for thread in threads:
            thread.start()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m notifyq.bench.rtt")
    parser.add_argument("target", help="HOST:PORT or the path of a Unix socket")
    parser.add_argument("rtt_ms", type=float, help="added round trip, ms")
    a = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    print(listener.getsockname()[1], flush=True)  # the parent reads the port
    serve(listener, a.target, a.rtt_ms / 1000)


@contextlib.asynccontextmanager
async def open_proxy(target: str, rtt_s: float) -> AsyncIterator[int]:
    """The proxy subprocess, for the block; yields its port on 127.0.0.1."""
    args = [sys.executable, "-m", "notifyq.bench.rtt", target, str(rtt_s * 1000)]
    proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = b""
        with trio.move_on_after(STARTUP_TIMEOUT_S):
            while not line.endswith(b"\n") and (data := await proc.stdout.receive_some()):
                line += data
        if not line.strip():
            raise RuntimeError(f"the delaying proxy did not start (exit code {proc.poll()})")
        yield int(line)
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


@contextlib.asynccontextmanager
async def open_proxied(dsn: str, rtt_s: float) -> AsyncIterator[str]:
    """``dsn`` through a proxy adding ``rtt_s`` to every round trip (the block's lifetime)."""
    async with open_proxy(target_of(dsn), rtt_s) as port:
        yield through(dsn, port)


if __name__ == "__main__":
    main()
