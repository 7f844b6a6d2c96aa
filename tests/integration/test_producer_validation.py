"""One set of task options and one check, for every entry point; what the check accepts,
PostgreSQL stores, and what it refuses never reaches the caller's transaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import notifyq
from notifyq import db, spec
from tests.integration.test_producers import DRIVERS, query, run_in
from tests.integration.test_web_api import error_of, post

SYNC = ("psycopg", "psycopg-cursor", "sqlalchemy-connection", "sqlalchemy-session")

# Each would abort the transaction if it reached PostgreSQL (or the driver).
REFUSED: list[dict[str, Any]] = [
    {"kind": "a\x00b"},
    {"kind": "k\udcff"},  # what surrogateescape makes of a bad byte in argv
    {"queue": "\ud83d"},
    {"payload": {"text": "lone \udc00"}},
    {"payload": {"k\udc00": 1}},
    {"payload": {"nul": "\x00"}},
    {"payload": [float("nan")]},
    {"timeout": 1e-7},
    {"unique_key": "u\x00"},
    {"concurrency_key": "c\ud800"},
    {"meta": {"origin": "\x00"}},
]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_task_leaves_the_callers_transaction_usable(
    driver: str, database_url: str
) -> None:
    def action(conn: Any) -> Any:
        def refused() -> None:
            for options in REFUSED:
                arguments = {"kind": "noop", **options}
                with pytest.raises(notifyq.InvalidTask):
                    notifyq.enqueue(conn, **arguments)
                with pytest.raises(notifyq.InvalidTask):
                    notifyq.enqueue_many(conn, [{"kind": "noop"}, arguments])

        if driver in SYNC:
            first = notifyq.enqueue(conn, "noop", 1)
            refused()
            return [first, notifyq.enqueue(conn, "noop", 2)]

        async def go() -> list[int]:
            first = await notifyq.enqueue(conn, "noop", 1)
            refused()
            return [first, await notifyq.enqueue(conn, "noop", 2)]

        return go()

    ids = run_in(driver, database_url, action)
    rows = query(database_url, "SELECT id, payload FROM notifyq.tasks ORDER BY id")
    assert rows == [(ids[0], 1), (ids[1], 2)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_option_on_the_callers_connection(driver: str, database_url: str) -> None:
    options: dict[str, Any] = {
        "unique_key": "report:1",
        "concurrency_key": "customer-9",
        "meta": {"o": "web"},
    }

    def action(conn: Any) -> Any:
        if driver in SYNC:
            return [
                notifyq.enqueue(conn, "report", 1, **options),
                notifyq.enqueue(conn, "report", 2, **options),  # the key is live: not added
                notifyq.enqueue_many(
                    conn,
                    [
                        {"kind": "a", "meta": {"n": 1}},
                        {"kind": "b", "unique_key": "report:1"},
                        {"kind": "c", "unique_key": "other", "concurrency_key": "k"},
                        {"kind": "d", "unique_key": "other"},
                        {"kind": "e"},
                    ],
                ),
            ]

        async def go() -> list[Any]:
            return [
                await notifyq.enqueue(conn, "report", 1, **options),
                await notifyq.enqueue(conn, "report", 2, **options),
                await notifyq.enqueue_many(
                    conn,
                    [
                        {"kind": "a", "meta": {"n": 1}},
                        {"kind": "b", "unique_key": "report:1"},
                        {"kind": "c", "unique_key": "other", "concurrency_key": "k"},
                        {"kind": "d", "unique_key": "other"},
                        {"kind": "e"},
                    ],
                ),
            ]

        return go()

    first, duplicate, many = run_in(driver, database_url, action)
    assert duplicate is None
    assert many[1] is None and many[3] is None
    assert first < many[0] < many[2] < many[4]
    rows = query(
        database_url,
        "SELECT kind, payload, unique_key, concurrency_key, meta FROM notifyq.tasks ORDER BY id",
    )
    assert rows == [
        ("report", 1, "report:1", "customer-9", {"o": "web"}),
        ("a", {}, None, None, {"n": 1}),
        ("c", {}, "other", "k", None),
        ("e", {}, None, None, None),
    ]


# --- what the check accepts, PostgreSQL stores ----------------------------------------------

# Any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None))
JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


SECONDS = (
    st.none()
    | st.floats()
    | st.floats(min_value=0, max_value=0.01)
    | st.integers(min_value=-(10**20), max_value=10**400)
    | st.timedeltas()
)


@pytest.fixture
def asyncpg_in_a_loop(database_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database_url))
    try:
        yield loop, conn
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    database=None,  # no example files in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=ANY_TEXT,
    # Each option is mostly valid, so that the others' checks are reached too.
    queue=st.just("default") | st.just("default") | ANY_TEXT,
    payload=JSON_LIKE,
    meta=st.none() | st.dictionaries(ANY_TEXT, JSON_LIKE, max_size=2),
    timeout=st.none() | st.none() | SECONDS,
    delay=st.none() | st.none() | SECONDS,
    run_at=st.none()
    | st.none()
    | st.datetimes(
        timezones=st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        )
    ),
    priority=st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.integers(min_value=-(2**33), max_value=2**33),
    max_attempts=st.integers(min_value=1, max_value=1000)
    | st.integers(min_value=-1, max_value=2000),
    key=st.none() | ANY_TEXT,
)
def test_what_the_check_accepts_postgresql_stores(
    asyncpg_in_a_loop: tuple[asyncio.AbstractEventLoop, Any],
    kind: str,
    queue: str,
    payload: Any,
    meta: dict[str, Any] | None,
    timeout: float | timedelta | None,
    delay: float | timedelta | None,
    run_at: datetime | None,
    priority: int,
    max_attempts: int,
    key: str | None,
) -> None:
    loop, conn = asyncpg_in_a_loop
    options = {
        "queue": queue,
        "payload": payload,
        "meta": meta,
        "timeout": timeout,
        "delay": delay,
        "run_at": run_at,
        "priority": priority,
        "max_attempts": max_attempts,
        "unique_key": key,
        "concurrency_key": key,
    }

    async def go() -> None:
        async with conn.transaction():
            try:
                task = spec.new_task(kind, **options)
            except notifyq.InvalidTask as refused:
                event(f"refused: {refused.option}")
                return  # refused first: nothing reached the database
            event("stored")
            task_id = await notifyq.enqueue(conn, kind, **options)
            stored = await conn.fetchrow(
                "SELECT kind, payload::text, meta::text FROM notifyq.tasks WHERE id = $1", task_id
            )
            assert stored["kind"] == kind
            # jsonb keeps numbers as numeric: 5.7e+16 comes back as 57000000000000000.
            assert _exact(stored["payload"]) == _exact(task.payload_json)
            raise _Rollback

    with contextlib.suppress(_Rollback):
        loop.run_until_complete(go())


def _exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


class _Rollback(Exception):
    pass


# --- the other entry points ------------------------------------------------------------------


async def test_the_trio_client_takes_the_same_options(database: db.Database) -> None:
    client = notifyq.Client(database)
    task_id = await client.enqueue(
        "noop", {"a": 1}, delay=5, timeout=2, meta={"origin": "cli"}, concurrency_key="c"
    )
    row = await client.get(task_id)
    assert (row["meta"], row["concurrency_key"], row["timeout"].total_seconds()) == (
        {"origin": "cli"},
        "c",
        2.0,
    )
    # The names the README showed before keep working.
    old = await client.get(await client.enqueue("noop", delay_s=1, timeout_s=3))
    assert old["timeout"].total_seconds() == 3.0
    for options in REFUSED:
        arguments = {"kind": "noop", **options}
        with pytest.raises(notifyq.InvalidTask):
            await client.enqueue(**arguments)
    with pytest.raises(notifyq.InvalidTask, match="at most 1048576 bytes"):
        await client.enqueue("noop", "x" * 5_000_000)
    with pytest.raises(TypeError, match="give delay or delay_s, not both"):
        await client.enqueue("noop", delay=1, delay_s=1)
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 2


async def test_post_tasks_uses_the_same_check(database: db.Database) -> None:
    from tests.helpers import running_web

    async with running_web(database, workers=False) as web:
        client = web.test_client()
        created = await post(
            client, "/tasks", {"kind": "noop", "meta": {"origin": "http"}, "timeout": 0.5}
        )
        assert created.status_code == 201
        # 1.5 MB: under the body limit, over the payload limit.
        too_big = await post(client, "/tasks", {"kind": "noop", "payload": "x" * 1_500_000})
        error = await error_of(too_big, 422, "validation_failed")
        assert error["message"].endswith("expected at most 1048576 bytes of JSON, got 1500002")
        five_mb = await post(client, "/tasks", {"kind": "noop", "payload": "x" * 5_000_000})
        await error_of(five_mb, 413, "request_entity_too_large")
        tiny = await post(client, "/tasks", {"kind": "noop", "timeout": 1e-7})
        await error_of(tiny, 422, "validation_failed")
    assert await database.fetchval("SELECT meta FROM notifyq.tasks") == {"origin": "http"}
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1


# --- wait leaves the application's own LISTEN -----------------------------------------------


def test_wait_keeps_the_applications_listen(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        task_id = notifyq.enqueue(conn, "noop")
        conn.execute("LISTEN notifyq_done")
        with pytest.raises(notifyq.WaitTimeout):
            notifyq.wait(conn, task_id, timeout_s=0.1)
        assert conn.execute("SELECT pg_listening_channels()").fetchall() == [("notifyq_done",)]

    async def on_asyncio() -> list[Any]:
        listening: list[Any] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
            await aconn.execute("LISTEN notifyq_done")
            with pytest.raises(notifyq.WaitTimeout):
                await notifyq.wait(aconn, task_id, timeout_s=0.1)
            listening.append(
                await (await aconn.execute("SELECT pg_listening_channels()")).fetchall()
            )
        pg_conn = await asyncpg.connect(database_url)
        try:
            heard: list[str] = []
            got_one = asyncio.Event()

            def on_done(*args: Any) -> None:
                heard.append(args[-1])
                got_one.set()

            await pg_conn.add_listener("notifyq_done", on_done)
            with pytest.raises(notifyq.WaitTimeout):
                await notifyq.wait(pg_conn, task_id, timeout_s=0.1)
            listening.append(await pg_conn.fetch("SELECT pg_listening_channels()"))
            await pg_conn.execute("SELECT pg_notify('notifyq_done', 'still here')")
            await asyncio.wait_for(got_one.wait(), 10)
            listening.append(heard)
            raw = await asyncpg.connect(database_url)
            try:
                await raw.execute("LISTEN notifyq_done")
                with pytest.raises(notifyq.WaitTimeout):
                    await notifyq.wait(raw, task_id, timeout_s=0.1)
                listening.append(await raw.fetch("SELECT pg_listening_channels()"))
            finally:
                await raw.close()
        finally:
            await pg_conn.close()
        return listening

    psycopg_async, asyncpg_own, heard, asyncpg_raw = asyncio.run(on_asyncio())
    assert psycopg_async == [("notifyq_done",)]
    assert [tuple(r) for r in asyncpg_own] == [("notifyq_done",)]
    assert heard == ["still here"]
    assert [tuple(r) for r in asyncpg_raw] == [("notifyq_done",)]
