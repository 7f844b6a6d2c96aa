"""notifyq.vocabulary is the one spelling of the contract's words.

It imports no driver, it says what the schema says, and no other module (Python, the page's
template and script) spells a status, an answer or a channel again.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import notifyq
from notifyq import vocabulary
from notifyq.vocabulary import CHANNELS, STATUSES, Answer, Event, Status, Verdict

PACKAGE = Path(notifyq.__file__).parent
SCHEMA = (PACKAGE.parent / "schema.sql").read_text()


def test_importing_it_loads_no_driver_and_not_the_store() -> None:
    code = (
        "import sys, notifyq.vocabulary\n"
        "print(' '.join(m for m in ('asyncpg', 'trio', 'trio_asyncio', 'notifyq.store', "
        "'notifyq.db', 'pydantic') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def _check_values(constraint: str) -> set[str]:
    # The last definition counts: a later migration may replace a constraint.
    matches = re.findall(rf"CONSTRAINT {constraint}\s+CHECK \((\w+) IN \(([^)]*)\)\)", SCHEMA)
    assert matches, constraint
    return set(re.findall(r"'([a-z_]+)'", matches[-1][1]))


def test_statuses_are_the_tasks_check_constraint() -> None:
    # schema.sql is today's schema, kept equal to the migrations by test_schema_file.
    assert _check_values("tasks_status_valid") == set(STATUSES) == {s.value for s in Status}
    # waiting is neither: it has not ended, and it may not run until its parents end.
    assert set(STATUSES) == vocabulary.ENDED | vocabulary.LIVE | {Status.WAITING}
    assert not vocabulary.ENDED & vocabulary.LIVE


def test_verdicts_and_requeued_are_history_events() -> None:
    events = _check_values("task_events_event_valid")
    assert {v.value for v in Verdict} | {Answer.REQUEUED.value} <= events
    assert {e.value for e in Event} <= events


def test_channels_are_those_the_schema_notifies_on() -> None:
    assert set(re.findall(r"pg_notify\('([a-z_]+)'", SCHEMA)) == set(CHANNELS)


def test_the_cancel_and_retry_functions_answer_in_the_vocabulary() -> None:
    answered = set(re.findall(r"RETURN '([a-z_]+)'", SCHEMA)) - {"attached"}
    assert answered == {Status.CANCELLED.value, Status.WAITING.value} | {a.value for a in Answer}


def test_the_http_status_type_is_the_vocabulary() -> None:
    from notifyq.web import models

    assert get_args(models.Status) == STATUSES


# --- no second spelling --------------------------------------------------------------

# Words that mean one thing only wherever they appear as a string.
ALWAYS = (
    {Status.PENDING, Status.IN_PROGRESS, Status.CANCELLED}
    | {a.value for a in Answer}
    | (set(CHANNELS) - {vocabulary.QUEUE_CHANNEL})  # "notifyq" names much else too
    | {vocabulary.PROBE_CHANNEL_PREFIX}
)
# Words that are also plain English (or a row's column, an HTTP body's key): a status only
# where a value is compared with them or they are listed with another status.
IN_COMPARISONS = set(STATUSES) | {v.value for v in Verdict}
SKIPPED = {"vocabulary.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _compared(tree: ast.AST) -> set[int]:
    """Constants compared with something, alone or in a listed group."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                found |= {id(item) for item in items if isinstance(item, ast.Constant)}
    return found


def respellings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip, compared = _docstrings(tree), _compared(tree)
    keys = set()  # a row's column or a JSON body's field, by name
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            keys |= {id(key) for key in node.keys if key is not None}
    found = []
    for node in sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Constant)),
        key=lambda n: (n.lineno, n.col_offset),
    ):
        if not isinstance(node.value, str):
            continue
        if id(node) in skip or id(node) in keys:
            continue
        value = node.value
        if value in ALWAYS or (value in IN_COMPARISONS and id(node) in compared):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {value!r}")
    return found


def test_no_module_spells_a_status_or_a_channel_again() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if not SKIPPED & set(path.relative_to(PACKAGE).parts):
            found += respellings(path)
    assert found == [], "use notifyq.vocabulary:\n" + "\n".join(found)


def test_the_page_takes_the_statuses_from_the_server() -> None:
    # "done" and "error" are CSS classes too; the others are statuses only.
    quoted = re.compile("[\"']({})[\"']".format("|".join(sorted(ALWAYS & set(STATUSES)))))
    for name in ("static/page.js", "templates/status.html", "templates/task.html"):
        text = (PACKAGE / "web" / name).read_text()
        assert quoted.findall(text) == [], name
    script = (PACKAGE / "web" / "static" / "page.js").read_text()
    assert "dataset.statuses" in script


def test_the_scan_finds_a_respelling(tmp_path: Path) -> None:
    sample = PACKAGE / "_respelling_sample.py"
    sample.write_text(
        'def f(row):\n    """pending, done"""\n    x = row["error"]\n'
        '    return row["status"] in ("done", "error") or "notifyq_done"\n'
    )
    try:
        assert [line.split(": ", 1)[1] for line in respellings(sample)] == [
            "'done'",
            "'error'",
            "'notifyq_done'",
        ]
    finally:
        sample.unlink()
