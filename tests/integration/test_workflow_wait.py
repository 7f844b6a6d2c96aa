"""Waiting for a whole workflow (notifyq.wait_workflow, Client.wait_workflow): LISTEN
notifyq_done as a hint, the rows decide; sync, asyncio and trio alike. The workflows run on
a real notifyq service (the built-in `reverse` handler)."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest
import trio

import notifyq
from notifyq import db
from notifyq.client import Client
from tests.helpers import running_service


def reverse(text: str) -> notifyq.NewTask:
    return notifyq.task("reverse", text)


async def test_wait_for_a_chain_a_group_and_a_chord_from_every_side(database: db.Database) -> None:
    dsn = database.dsn

    def on_threads() -> list[notifyq.WorkflowOutcome]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            chain = notifyq.enqueue_workflow(conn, notifyq.chain(reverse("ab"), reverse("cd")))
            group = notifyq.enqueue_workflow(conn, notifyq.group(reverse("ef"), reverse("gh")))
            chord = notifyq.enqueue_workflow(
                conn, notifyq.chord([reverse(str(n)) for n in range(20)], reverse("end"))
            )
            waited = [notifyq.wait_workflow(conn, chain, timeout_s=20)]

        async def on_asyncio() -> list[notifyq.WorkflowOutcome]:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
                first = await notifyq.wait_workflow(aconn, group, timeout_s=20)
            pg_conn = await asyncpg.connect(dsn)
            try:
                second = await notifyq.wait_workflow(pg_conn, chord, timeout_s=20)
            finally:
                await pg_conn.close()
            return [first, second]

        return [*waited, *asyncio.run(on_asyncio())]

    async with running_service(database):
        chain, group, chord = await trio.to_thread.run_sync(on_threads)
        trio_side = await Client(database).enqueue_workflow(
            notifyq.chain(reverse("ij"), notifyq.group(reverse("kl"), reverse("mn")))
        )
        from_trio = await Client(database).wait_workflow(trio_side, timeout_s=20)
    assert chain.ended and chain.ok
    assert [t.result for t in chain.tasks] == ["ba", "dc"]
    assert [t.result for t in group.tasks] == ["fe", "hg"]
    # A chord is waited for through its callback (released once its batch completed).
    assert [t.result for t in chord.tasks] == ["dne"]
    assert [(b.total, b.done, b.failed, b.remaining) for b in chord.batches] == [(20, 20, 0, 0)]
    assert [t.result for t in from_trio.tasks] == ["ji", "lk", "nm"]


def test_wait_for_a_workflow_times_out(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        added = notifyq.enqueue_workflow(conn, notifyq.group(reverse("a"), reverse("b")))
        with pytest.raises(notifyq.WaitTimeout) as caught:
            notifyq.wait_workflow(conn, added, timeout_s=0.2)
        assert str(caught.value) == f"task {added.ids[0]} did not end within 0.2 s"
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


async def test_a_failed_step_cancels_the_rest_and_the_wait_ends(database: db.Database) -> None:
    app = notifyq.App()

    @app.handler("boom")
    def boom(task: notifyq.Task) -> None:
        raise notifyq.Fail("no")

    client = Client(database)
    added = await client.enqueue_workflow(
        notifyq.chain(
            notifyq.task("boom", max_attempts=1),
            notifyq.chord([reverse("a"), reverse("b")], reverse("cb")),
            reverse("after"),
        )
    )
    async with running_service(database, app):
        outcome = await client.wait_workflow(added, timeout_s=20)
    assert outcome.ended and not outcome.ok
    assert [t.status for t in outcome.tasks] == ["error", "cancelled", "cancelled"]
    assert (
        outcome.tasks[1].error == f"batch {outcome.batches[0].id} ended with 2 failed members of 2"
    )
    assert [(b.total, b.failed, b.remaining) for b in outcome.batches] == [(2, 2, 0)]
