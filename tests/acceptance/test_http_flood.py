"""A flood of HTTP requests against `notifyq serve` while a task runs.

The HTTP side has its own database pool and a bound on the requests it handles at once
(HTTP_MAX_REQUESTS): past it, a request gets 503 `overloaded` at once. So a flood is answered
(never a reset connection), and the workers' heartbeats and outcome writes never wait behind
it: the running task keeps its lease and ends once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import httpx
import trio

from tests.acceptance.proc import Notifyq, scalar

Start = Callable[..., Notifyq]

FLOOD = 400  # requests at once, each wave
LEASE_S = 5  # short, so that a heartbeat held up by the flood loses the lease


def seed_listable_tasks(url: str, n: int) -> None:
    """``n`` ended tasks with a payload each, so that listing them costs real work."""
    payload = json.dumps({"text": "x" * 400})
    scalar(
        url,
        "INSERT INTO notifyq.tasks (kind, payload, status, finished_at) "
        f"SELECT 'noop', '{payload}'::jsonb, 'done', now() FROM generate_series(1, {n})",
    )


async def one_request(http: httpx.AsyncClient, i: int, answers: Counter[str]) -> None:
    try:
        if i % 3 == 0:
            response = await http.post("/tasks", json={"kind": "noop", "payload": {"i": i}})
        else:
            response = await http.get("/tasks", params={"limit": 500})
    except httpx.TransportError as exc:  # a reset, a refused or dropped connection
        answers[type(exc).__name__] += 1
        return
    if response.status_code == 503:
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"]["code"] in {"overloaded", "database_unavailable"}
    answers[str(response.status_code)] += 1


async def test_a_request_flood_is_answered_and_never_costs_a_task_its_lease(
    database_url: str, notifyq: Start
) -> None:
    seed_listable_tasks(database_url, 500)
    serve = notifyq(
        database_url,
        "serve",
        "--lease",
        f"{LEASE_S}s",
        env={"HTTP_MAX_REQUESTS": "16", "LOG_LEVEL": "info"},
    )
    base = serve.http_url()
    # Longer than the lease: it keeps running only if its heartbeats get through.
    task_id = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '6') RETURNING id",
    )
    answers: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        with trio.fail_after(90):
            while scalar(
                database_url, f"SELECT status FROM notifyq.tasks WHERE id = {task_id}"
            ) in {
                "pending",
                "in_progress",
            }:
                async with trio.open_nursery() as wave:
                    for i in range(FLOOD):
                        wave.start_soon(one_request, http, i, answers)
    assert set(answers) <= {"200", "201", "503"}, answers
    assert answers["503"] > 0, answers  # the flood went past the bound
    # One attempt, never recovered from a lost lease: it ran once.
    row = scalar(
        database_url,
        "SELECT status || ' ' || attempts || ' ' || (SELECT string_agg(e.event, ',' ORDER BY "
        "e.id) FROM notifyq.task_events e WHERE e.task_id = t.id) "
        f"FROM notifyq.tasks t WHERE id = {task_id}",
    )
    assert row == "done 1 done", (row, answers)
