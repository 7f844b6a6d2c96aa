"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

A real `notifyq serve` (workers and HTTP) on a database of this module's own. Schemathesis
generates valid and invalid requests for every documented operation (except the endless
/events stream); every response must be below 500, every error must be the JSON error
shape, and responses must match the document. A summary line `FUZZ REPORT` is printed.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests import pg
from tests.acceptance.proc import Notifyq
from tests.conftest import fresh_database

pytestmark = pytest.mark.slow  # schemathesis over every operation

EXAMPLES_PER_OPERATION = 20
TOKEN = "fuzzing-token-0123456789"
report: dict[str, Any] = {"examples": 0, "statuses": Counter(), "operations": set()}


@pytest.fixture(scope="module")
def fuzzed_server(server_url: str, template_name: str) -> Iterator[str]:
    name = fresh_database(server_url, template_name)
    url = pg.with_database(server_url, name)
    # Fuzzed tasks may sleep for long: a short grace keeps the SIGINT below well inside
    # its wait (the default 30 s grace equalled it).
    env = {"WORKER_COUNT": "2", "API_TOKEN": TOKEN, "SHUTDOWN_TIMEOUT": "5"}
    serve = Notifyq(url, "serve", env=env)
    try:
        yield serve.http_url()
        serve.signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0
        print(
            f"\nFUZZ REPORT: {report['examples']} requests over {len(report['operations'])} "
            f"operations; statuses {dict(sorted(report['statuses'].items()))}; 5xx: "
            f"{sum(n for s, n in report['statuses'].items() if s >= 500)}"
        )
        assert '"level": "error"' not in serve.stderr(), serve.stderr()[-3000:]
    finally:
        serve.close()
        pg.psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_api_from_its_openapi_document(fuzzed_server: str) -> None:
    # schemathesis's pytest plugin does not run on pytest 9; its Python API does.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json").exclude(path="/events")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # every operation parses
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                call_and_check(case)

            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid: no parameters and no body
            except (Exception, BaseExceptionGroup) as exc:  # gather all, then report
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert report["examples"] > 0
    assert not failures, "\n\n".join(failures)


def call_and_check(case: Any) -> None:
    # The document says which operations need the token; schemathesis also checks that
    # they refuse requests without it.
    response = case.call(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
    report["examples"] += 1
    report["statuses"][response.status_code] += 1
    report["operations"].add(f"{case.method} {case.path}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/json"], response.text
        error = json.loads(response.text)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    # POST /schedules checks more than its schema can say (a cron expression that parses, an
    # interval of whole seconds, a known time zone and kind), and so does POST /tasks (no NUL
    # or lone surrogate in any string of the payload or meta, at most MAX_PAYLOAD_BYTES):
    # schema-valid bodies get 422. POST /workflows holds POST /tasks' bodies (and shapes
    # notifyq refuses: a group of chains). The console's filter language (GET /tasks, its
    # count, /failures, the bulk actions' filter) checks its values' formats and ranges
    # (an ISO 8601 time or an age, ids within bigint, known statuses): its strings get 422.
    semantic = (case.method, case.path) in {
        ("POST", "/schedules"),
        ("POST", "/tasks"),
        ("POST", "/workflows"),
        ("GET", "/tasks"),
        ("GET", "/tasks/count"),
        ("GET", "/failures"),
        ("POST", "/tasks/bulk/{action}"),
    }
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance] if semantic else None
    )
