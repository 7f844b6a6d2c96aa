"""Notify-only-while-waiting: no insert is left for the FETCH_INTERVAL sweep."""

from __future__ import annotations

import random

import trio

from notifyq import db, listen
from tests.helpers import running_service, wait_ended

INSERT = "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id"


async def test_inserts_racing_workers_going_idle_are_all_woken(database: db.Database) -> None:
    """Producers insert while the service keeps running dry and recording itself as waiting.

    Some producers commit at once, some hold their transaction open for a moment after the
    trigger ran (so go_idle cannot get its lock and must retry). With the sweep at 60 s,
    any lost wake-up would leave a row pending far longer than the deadline below.
    """
    ids: list[int] = []
    rng = random.Random(5)

    async def produce(conn_db: db.Database, slow_commit: bool) -> None:
        for _ in range(60):
            if slow_commit:
                async with conn_db.transaction() as tx:
                    ids.append(int(await tx.fetchval(INSERT)))
                    await trio.sleep(rng.uniform(0, 0.004))
            else:
                ids.append(int(await conn_db.fetchval(INSERT)))
            await trio.sleep(rng.uniform(0, 0.006))

    async with (
        running_service(database, fetch_interval_s=60, worker_count=2, fetch_limit=2) as service,
        db.open_database(database.dsn, min_size=4, max_size=4) as producers,
    ):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(produce, producers, i % 2 == 1)
        rows = await wait_ended(database, *ids, timeout=20)
        waits = await database.fetchval("SELECT max(started_at - created_at) FROM notifyq.tasks")
        assert service.statistics().workers.done == len(ids) == 240
    assert all(r["status"] == "done" for r in rows)
    # A lost wake-up waits for the 60 s sweep; a slow, shared CI machine takes seconds.
    assert waits.total_seconds() < 10, f"a row waited {waits}: a wake-up was lost"


async def _notified(listener: listen.ListenConnection, within_s: float) -> int:
    """Notifications on the listener's channel in the next ``within_s`` seconds."""
    count = 0
    with trio.move_on_after(within_s):
        async for _ in listener:
            count += 1
    return count


async def test_inserts_during_the_claim_linger_send_no_notification(
    database: db.Database,
) -> None:
    """A: wakes the idle process (one notification), whose claim takes it and lingers. B,
    inserted during the linger: no notification, claimed when the linger ends. Then an
    empty claim records the process again: C notifies. Without a linger B notifies too."""
    for linger_s, expected in ((1.0, 2), (0.0, 3)):
        async with (
            running_service(database, fetch_interval_s=60, claim_linger_s=linger_s),
            listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener,
        ):
            await trio.sleep(0.3)  # the service has claimed nothing and waits
            notes = 0
            a = int(await database.fetchval(INSERT))
            await wait_ended(database, a, timeout=10)
            b = int(await database.fetchval(INSERT))
            notes += await _notified(listener, 0.1)
            await wait_ended(database, b, timeout=10)
            await trio.sleep(linger_s + 0.3)  # the empty claim after the linger, and idle
            c = int(await database.fetchval(INSERT))
            await wait_ended(database, c, timeout=10)
            notes += await _notified(listener, 0.2)
        assert notes == expected, f"CLAIM_LINGER={linger_s}: {notes} notifications"
