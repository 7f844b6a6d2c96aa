"""What batches cost the outcome writer (a measurement, not a test: it prints numbers and
asserts nothing).

    python -m tests.workflows_bench [--members 100000] [--connections 1 4] [--chunk 100]

On a private embedded PostgreSQL with its default (durable) settings, ``--members`` tasks
are drained by ``--connections`` concurrent connections, each claiming ``--chunk`` rows with
the real `claim` statement and ending them with the real `finish` statement (one commit
each), three ways: the schema before workflows (migrations 0001-0013 and that version's
statements), the same tasks on this schema without a batch, and as the members of one
batch with a callback. Prints the tasks/s of the drain and of the finish statements alone,
and checks that the callback was released once.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import trio

from notifyq import db, logs, migrations, sql
from notifyq.cli.common import run
from tests import pg

ROOT = Path(__file__).resolve().parents[1]


def statements_before_workflows() -> Mapping[str, str]:
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", "9c9a0d5:notifyq/queries.sql"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sql.parse(text)


def migrate_before_workflows(url: str) -> None:
    pg.psql(url, sql.queries["migrate_bootstrap"])
    for m in migrations.available():
        if m.version < 14:
            pg.psql(url, m.sql, timeout=120)


async def drain(
    url: str, queries: Mapping[str, str], members: int, connections: int, chunk: int, batch: bool
) -> tuple[float, float]:
    """(tasks/s of the whole drain, tasks/s of the finish statements alone)."""
    async with db.open_database(url, min_size=connections + 1, max_size=connections + 1) as d:
        if batch:
            await d.execute(
                "WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id)"
                " INSERT INTO notifyq.tasks (kind, batch_id, after_batch)"
                " SELECT 'm', b.id, NULL FROM b, generate_series(1, $1::int)"
                " UNION ALL SELECT 'cb', NULL, b.id FROM b",
                members,
            )
        else:
            await d.execute(
                "INSERT INTO notifyq.tasks (kind) SELECT 'm' FROM generate_series(1, $1::int)",
                members,
            )
        await d.execute("VACUUM ANALYZE notifyq.tasks")
        finishing = [0.0]

        async def worker(n: int) -> None:
            name = f"bench-{n}"
            async with d.held() as conn:
                while True:
                    rows = await conn.fetch(queries["claim"], ["default"], chunk, name, 60.0, ["m"])
                    if not rows:
                        return
                    started = time.perf_counter()
                    await conn.fetch(
                        queries["finish"],
                        name,
                        [r["id"] for r in rows],
                        [r["attempts"] for r in rows],
                        ["done"] * len(rows),
                        ["null"] * len(rows),
                        [None] * len(rows),
                        [0.0] * len(rows),
                        [r["claim_token"] for r in rows],
                        [None] * len(rows),
                    )
                    finishing[0] += time.perf_counter() - started

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(connections):
                nursery.start_soon(worker, n)
        took = time.perf_counter() - started
        if batch:
            row = await d.fetchrow(
                "SELECT b.done, t.status, (SELECT count(*) FROM notifyq.task_events e"
                " WHERE e.task_id = t.id AND e.event = 'released') AS released"
                " FROM notifyq.batches b JOIN notifyq.tasks t ON t.id = b.callback_id"
            )
            assert row is not None
            assert (row["done"], row["status"], row["released"]) == (members, "pending", 1), row
        left = await d.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status <> 'done'")
        assert left == (1 if batch else 0), left
    return members / took, members / (finishing[0] / connections)


async def main(
    server: pg.EmbeddedServer, members: int, connection_counts: list[int], chunk: int
) -> None:
    before = statements_before_workflows()
    for connections in connection_counts:
        for label, batch, old in [
            ("before workflows (0013)", False, True),
            ("no batch (0014)", False, False),
            ("one batch + callback (0014)", True, False),
        ]:
            name = f"bench_{connections}_{int(batch)}_{int(old)}"
            pg.psql(server.url, f"CREATE DATABASE {name}")
            url = pg.with_database(server.url, name)
            if old:
                migrate_before_workflows(url)
            else:
                async with db.open_database(url) as d:
                    await migrations.migrate(d)
            rate, finish_rate = await drain(
                url, before if old else sql.queries, members, connections, chunk, batch
            )
            print(
                f"{connections} conn, chunk {chunk}, {label:28}: drain {rate:8.0f} tasks/s,"
                f" finish statements {finish_rate:8.0f} tasks/s"
            )
            pg.psql(server.url, f"DROP DATABASE {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    logs.configure("warning", "console")
    # Started before the trio run: the server's set-up runs asyncio.run, which refuses to
    # run inside trio; the drain needs the trio-asyncio loop that notifyq's `run` opens.
    server = pg.EmbeddedServer({"max_connections": "100"})
    try:
        run(lambda: main(server, args.members, args.connections, args.chunk))
    finally:
        server.close()
