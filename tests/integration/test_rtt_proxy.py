"""`notifyq bench --rtt`: the delaying proxy adds its delay to every round trip, per
connection (connections do not wait for each other), and passes the bytes intact."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time

import trio

from notifyq import db
from notifyq.bench import rtt

RTT_S = 0.02  # large against this machine's noise (a loopback round trip is ~0.1 ms)


def test_a_dsn_is_rewritten_to_reach_the_proxy() -> None:
    dsn = "postgresql://me:pw@/app?host=/run/pg&port=5433&application_name=x"
    assert rtt.target_of(dsn) == "/run/pg/.s.PGSQL.5433"
    assert rtt.target_of("postgresql://me@db.example:6000/app") == "db.example:6000"
    assert rtt.target_of("postgresql://me@/app") == "localhost:5432"
    assert rtt.through(dsn, 4242) == (
        "postgresql://me:pw@127.0.0.1:4242/app?application_name=x&sslmode=disable"
    )


async def _round_trips(database: db.Database, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        assert await database.fetchval("SELECT 1") == 1
        took.append(time.perf_counter() - started)
    return took


async def test_select_1_through_the_proxy_takes_the_added_round_trip(database_url: str) -> None:
    async with (
        rtt.open_proxied(database_url, RTT_S) as url,
        db.open_database(url, min_size=1, max_size=1) as database,
        database.held() as conn,
    ):
        took = await _round_trips(conn, 5)
    assert min(took) >= RTT_S, took
    # Not a whole extra round trip on top (the two halves are slept, not rounded up): the
    # median of five.
    assert sorted(took)[2] < 2 * RTT_S, took


async def test_connections_are_delayed_side_by_side_not_in_turn(database_url: str) -> None:
    async with (
        rtt.open_proxied(database_url, RTT_S) as url,
        db.open_database(url, min_size=4, max_size=4) as database,
        contextlib.AsyncExitStack() as stack,
    ):
        held = [await stack.enter_async_context(database.held()) for _ in range(4)]
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for conn in held:
                nursery.start_soon(_round_trips, conn, 5)
        took = time.perf_counter() - started
    # 4 connections x 5 round trips: 5 x RTT side by side, 20 x RTT in turn (15: room for
    # a loaded machine's scheduling).
    assert 5 * RTT_S <= took < 15 * RTT_S, took


async def test_bytes_pass_intact_both_ways(database_url: str) -> None:
    blob = secrets.token_bytes(3_000_000)  # many chunks in each direction
    async with (
        rtt.open_proxied(database_url, 0.002) as url,
        db.open_database(url, min_size=1, max_size=1) as database,
    ):
        digest = await database.fetchval("SELECT md5($1::bytea)", blob)
        back = await database.fetchval("SELECT $1::bytea", blob)
    assert digest == hashlib.md5(blob).hexdigest()
    assert back == blob
