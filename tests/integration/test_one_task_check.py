"""One task check for every entry point: the same bad option gets the same rule, whether it
comes through notifyq.new_task, notifyq.enqueue/enqueue_many, Client.enqueue, POST /tasks,
`notifyq enqueue` or a schedule's definition, and nothing is added."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import notifyq
from notifyq import db, schedules, spec
from notifyq.cli import main
from notifyq.client import Client
from tests.helpers import Web
from tests.integration.test_web_api import error_of, idle_web, post  # noqa: F401 (a fixture)


@dataclass(frozen=True)
class Case:
    name: str
    option: str
    options: dict[str, Any]  # new_task's arguments besides kind "noop"
    rule: str  # how every entry point's message ends
    cli: list[str] | None = field(default=None)  # `notifyq enqueue noop ...`; None: no argv

    @property
    def arguments(self) -> dict[str, Any]:
        return {"kind": "noop", **self.options}


DEEP = json.loads("[" * 65 + "]" * 65)
BIG = "x" * spec.MAX_PAYLOAD_BYTES

CASES = [
    Case(
        "delay too big",
        "delay",
        {"delay": 1e10},
        spec.seconds_rule(0, spec.MAX_DELAY_S),
        ["--delay", "10000000000"],
    ),
    Case(
        "timeout too small",
        "timeout",
        {"timeout": 0.0001},
        spec.seconds_rule(spec.MIN_TIMEOUT_S, spec.MAX_TIMEOUT_S),
        ["--timeout", "0.1ms"],
    ),
    Case("NUL in kind", "kind", {"kind": "a\x00b"}, "PostgreSQL text cannot hold a NUL character"),
    Case(
        "empty queue name",
        "queue",
        {"queue": ""},
        "expected a string of 1 to 128 characters",
        ["--queue", ""],
    ),
    Case(
        "queue name too long",
        "queue",
        {"queue": "q" * 129},
        "expected a string of 1 to 128 characters",
        ["--queue", "q" * 129],
    ),
    Case(
        "oversize payload",
        "payload",
        {"payload": BIG},
        f"expected at most {spec.MAX_PAYLOAD_BYTES} bytes of JSON, got {len(BIG) + 2}",
        [BIG],
    ),
    Case(
        "payload too deep",
        "payload",
        {"payload": DEEP},
        f"nested deeper than {spec.MAX_JSON_DEPTH} levels",
        [json.dumps(DEEP)],
    ),
    Case(
        "unknown priority",
        "priority",
        {"priority": "highest"},
        "expected an integer (higher runs first) or one of low (-10), normal (0), high (10), "
        "urgent (20)",
        ["--priority", "highest"],
    ),
    Case(
        "priority out of range",
        "priority",
        {"priority": 2**31},
        "expected an integer from -2147483648 to 2147483647",
        ["--priority", str(2**31)],
    ),
    Case(
        "no attempt allowed",
        "max_attempts",
        {"max_attempts": 0},
        f"expected an integer from 1 to {spec.MAX_ATTEMPTS}",
        ["--max-attempts", "0"],
    ),
    Case(
        "unique key too long",
        "unique_key",
        {"unique_key": "u" * 513},
        "expected a string of 1 to 512 characters",
        ["--unique-key", "u" * 513],
    ),
    Case(
        "NUL in concurrency key",
        "concurrency_key",
        {"concurrency_key": "a\x00"},
        "PostgreSQL text cannot hold a NUL character",
    ),
    Case("meta not an object", "meta", {"meta": [1]}, "expected a JSON object", ["--meta", "[1]"]),
    Case(
        "parent named twice",
        "after",
        {"after": [3, 3]},
        "task 3 is named twice",
        ["--after", "3,3"],
    ),
    Case(
        "parent id not positive",
        "after",
        {"after": [0]},
        f"expected task ids (integers from 1 to {spec.MAX_TASK_ID})",
        ["--after", "0"],
    ),
    Case(
        "too many parents",
        "after",
        {"after": list(range(1, spec.MAX_PARENTS + 2))},
        f"expected at most {spec.MAX_PARENTS} parents, got {spec.MAX_PARENTS + 1}",
        ["--after", ",".join(map(str, range(1, spec.MAX_PARENTS + 2)))],
    ),
    Case(
        "unknown parent failure policy",
        "on_parent_failure",
        {"on_parent_failure": "skip"},
        "expected cancel or run",
        ["--on-parent-failure", "skip"],
    ),
    Case(
        "unique key with parents",
        "unique_key",
        {"unique_key": "k", "after": [1]},
        "a task with parents (after) has no unique_key",
        ["--unique-key", "k", "--after", "1"],
    ),
]
IDS = [case.name for case in CASES]


def python_error(case: Case) -> notifyq.InvalidTask:
    with pytest.raises(notifyq.InvalidTask) as caught:
        spec.new_task(**case.arguments)
    return caught.value


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_python_producers(case: Case, database_url: str) -> None:
    expected = python_error(case)
    assert expected.option == case.option
    assert str(expected).endswith(f": {case.rule}"), expected
    with psycopg.connect(database_url) as conn:
        for add in (
            lambda: notifyq.enqueue(conn, **case.arguments),
            lambda: notifyq.enqueue_many(conn, [case.arguments]),
        ):
            with pytest.raises(notifyq.InvalidTask) as caught:
                add()
            assert str(caught.value) == str(expected)
        assert conn.execute("SELECT count(*) FROM notifyq.tasks").fetchone() == (0,)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_the_client(case: Case, database: db.Database) -> None:
    with pytest.raises(notifyq.InvalidTask) as caught:
        await Client(database).enqueue(**case.arguments)
    assert str(caught.value) == str(python_error(case))


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_post_tasks(case: Case, idle_web: Web, database: db.Database) -> None:  # noqa: F811
    response = await post(idle_web.test_client(), "/tasks", case.arguments)
    error = await error_of(response, 422, "validation_failed")
    assert error["message"] == str(python_error(case))
    assert [d["field"] for d in error["details"]] == [case.option]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


@pytest.mark.parametrize("case", [c for c in CASES if c.cli is not None], ids=lambda c: c.name)
def test_notifyq_enqueue(case: Case) -> None:
    assert case.cli is not None
    # Refused before any connection is made: no database is needed.
    result = CliRunner().invoke(main, ["enqueue", "noop", *case.cli])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.endswith(case.rule), line
    # The CLI's own parse of a flag (priority) names the flag; the check names the option.
    assert f"invalid {case.option} " in line or f"'--{case.option}'" in line, line


SCHEDULE_OPTIONS = {"kind", "queue", "priority", "payload"}


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.option in SCHEDULE_OPTIONS], ids=lambda c: c.name
)
def test_a_schedules_definition(case: Case) -> None:
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.define("tick", every="1m", **case.arguments)
    assert str(caught.value) == f"schedule 'tick': {python_error(case)}"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.option in SCHEDULE_OPTIONS], ids=lambda c: c.name
)
async def test_post_schedules(case: Case, idle_web: Web, database: db.Database) -> None:  # noqa: F811
    body = {"name": "tick", "every": "1m", **case.arguments}
    response = await post(idle_web.test_client(), "/schedules", body)
    error = await error_of(response, 422, "validation_failed")
    assert error["message"] == f"schedule 'tick': {python_error(case)}"
    assert await database.fetchval("SELECT count(*) FROM notifyq.schedules") == 0


async def test_post_schedules_takes_a_named_priority(idle_web: Web) -> None:  # noqa: F811
    body = {"name": "tick", "every": "1m", "kind": "noop", "priority": "high"}
    response = await post(idle_web.test_client(), "/schedules", body)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["schedule"]["priority"] == 10
