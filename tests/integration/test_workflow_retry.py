"""Retrying a cancelled dependent through the client, HTTP and the CLI: the SQL may answer
`waiting` (its parent runs again or has not ended: the retry happened) or `parent_failed`
(nothing changed: a parent is still failed)."""

from __future__ import annotations

import pytest

from notifyq import db, errors
from notifyq.client import Client
from tests.helpers import Web
from tests.integration.test_web_api import idle_web, post  # noqa: F401 (a fixture)


async def _cancelled_dependent(database: db.Database, *, parent_fails: bool) -> int:
    parent = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id"
    )
    child = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, depends_on) VALUES ('noop', ARRAY[$1::bigint])"
        " RETURNING id",
        parent,
    )
    if parent_fails:
        await database.execute("SELECT notifyq.cancel($1)", parent)  # cascades to the child
    else:
        await database.execute("SELECT notifyq.cancel($1)", child)
    assert await database.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", child) == (
        "cancelled"
    )
    return int(child)


async def test_the_client_returns_waiting_for_a_dependent_whose_parent_has_not_ended(
    database: db.Database,
) -> None:
    child = await _cancelled_dependent(database, parent_fails=False)
    assert await Client(database).retry(child) == "waiting"
    assert await database.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", child) == (
        "waiting"
    )


async def test_the_client_refuses_a_dependent_whose_parent_failed_and_says_why(
    database: db.Database,
) -> None:
    child = await _cancelled_dependent(database, parent_fails=True)
    with pytest.raises(errors.InvalidTransition) as caught:
        await Client(database).retry(child)
    assert str(caught.value) == (
        f"cannot retry task {child}: it is cancelled by a parent that failed (retry the parent first)"
    )
    assert await database.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", child) == (
        "cancelled"
    )


async def test_http_retry_of_a_dependent_answers_200_waiting(
    idle_web: Web,  # noqa: F811
    database: db.Database,
) -> None:
    child = await _cancelled_dependent(database, parent_fails=False)
    response = await post(idle_web.test_client(), f"/tasks/{child}/retry")
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert await response.get_json() == {"id": child, "status": "waiting"}
