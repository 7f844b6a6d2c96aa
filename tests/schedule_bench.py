"""How the scheduler copes with a long outage and with many schedules (a measurement, not a
test: it prints numbers and asserts nothing).

    python -m tests.schedule_bench [--limit 10000] [--schedules 5000]

On a private embedded PostgreSQL: the seconds one process takes to fire 3 h of a per-second
schedule with catch-up ``all`` (the latest ``--limit`` ticks), the seconds to fire
``--schedules`` schedules due at once, and the CPU time of one pass that finds nothing due
among them (what each notification on ``notifyq_schedules`` costs every process).
"""

from __future__ import annotations

import argparse
import time

import trio

from notifyq import db, logs, migrations
from notifyq.engine.scheduler import Scheduler
from tests import pg


async def measure(url: str, limit: int, count: int) -> None:
    async with db.open_database(url, min_size=1, max_size=4) as database:
        await migrations.migrate(database)
        scheduler = Scheduler(database, queues={"default"}, kinds={"noop"}, sweep_s=5)

        await database.execute(
            "INSERT INTO notifyq.schedules (name, every, kind, catch_up, catch_up_limit,"
            " next_run_at) VALUES ('down', interval '1 s', 'noop', 'all', $1,"
            " date_trunc('second', now()) - interval '3 hours')",
            limit,
        )
        started = time.perf_counter()
        await scheduler.fire_due()
        took = time.perf_counter() - started
        fired = await database.fetchval("SELECT count(*) FROM notifyq.tasks")
        print(f"catch-up all after 3 h down: {fired} ticks in {took:.2f} s")

        await database.execute("DELETE FROM notifyq.schedules")
        await database.execute("DELETE FROM notifyq.tasks")
        await database.execute(
            "INSERT INTO notifyq.schedules (name, every, kind, payload, next_run_at)"
            " SELECT 's' || i, interval '1 hour', 'noop', '{\"report\": \"weekly\"}',"
            "        date_trunc('hour', now()) FROM generate_series(1, $1) AS i",
            count,
        )
        started = time.perf_counter()
        await scheduler.fire_due()
        took = time.perf_counter() - started
        fired = await database.fetchval("SELECT count(*) FROM notifyq.tasks")
        print(f"{count} schedules due at once: {fired} fired in {took:.2f} s")

        passes = 20
        cpu = time.process_time()
        for _ in range(passes):
            await scheduler.fire_due()
        per_pass = (time.process_time() - cpu) / passes
        print(f"a pass with {count} schedules, none due: {per_pass * 1000:.1f} ms of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--schedules", type=int, default=5_000)
    args = parser.parse_args()
    logs.configure("warning", "console")  # a line per firing would be measured too
    server = pg.EmbeddedServer(pg.TEST_SERVER_SETTINGS)
    try:
        pg.psql(server.url, "CREATE DATABASE schedule_bench")
        trio.run(
            measure, pg.with_database(server.url, "schedule_bench"), args.limit, args.schedules
        )
    finally:
        server.close()


if __name__ == "__main__":
    main()
