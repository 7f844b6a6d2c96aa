"""Named queries: the parser, and that every name the code looks up exists (in
``queries.sql``, or in the benchmarks' ``bench/bench.sql``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

import notifyq
from notifyq import sql
from notifyq.bench import common as bench

PACKAGE = Path(notifyq.__file__).parent
# `sql.queries["name"]` anywhere; a bare `queries["name"]` is bench's own file.
_LOOKUP = re.compile(r"""\bsql\.queries\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]""")
_BENCH_LOOKUP = re.compile(r"""(?<![.\w])queries\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]""")


def names_used_by_the_code(pattern: re.Pattern[str] = _LOOKUP) -> set[str]:
    used: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        used.update(pattern.findall(path.read_text(encoding="utf-8")))
    return used


def test_parse_splits_named_queries() -> None:
    text = (
        "-- A preamble comment, ignored.\n"
        "\n"
        "-- name: first\n"
        "-- What it does.\n"
        "SELECT 1;\n"
        "\n"
        "-- name: second\n"
        "SELECT a,\n"
        "       b  -- trailing comments stay\n"
        "  FROM t\n"
        "    -- an indented comment line goes\n"
        " WHERE x = $1;\n"
    )
    assert sql.parse(text) == {
        "first": "SELECT 1",
        "second": "SELECT a,\n       b  -- trailing comments stay\n  FROM t\n WHERE x = $1",
    }


def test_parse_keeps_file_order() -> None:
    text = "-- name: b\nSELECT 2\n-- name: a\nSELECT 1\n-- name: c\nSELECT 3\n"
    assert list(sql.parse(text)) == ["b", "a", "c"]


def test_parse_without_headers_finds_nothing() -> None:
    assert sql.parse("SELECT 1;\n-- just a comment\n") == {}
    assert sql.parse("") == {}


def test_header_must_be_a_line_of_its_own() -> None:
    text = "-- name: real\nSELECT '-- name: fake';\n"
    assert sql.parse(text) == {"real": "SELECT '-- name: fake'"}


def test_parse_rejects_duplicate_names() -> None:
    text = "-- name: dup\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: dup\nSELECT 3;\n"
    with pytest.raises(ValueError) as caught:
        sql.parse(text)
    assert str(caught.value) == "query 'dup' is defined twice"


@pytest.mark.parametrize(
    "text",
    [
        "-- name: empty\n-- name: next\nSELECT 1;\n",
        "-- name: empty\n-- only a comment\n\n-- name: next\nSELECT 1;\n",
        "-- name: next\nSELECT 1;\n-- name: empty\n   \n",
        "-- name: empty\n  -- indented comment\n",
    ],
)
def test_parse_rejects_empty_bodies(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        sql.parse(text)
    assert str(caught.value) == "query 'empty' is empty"


@pytest.mark.parametrize("shipped", [sql.queries, bench.queries], ids=["queries", "bench"])
def test_shipped_queries_are_clean_statements(shipped: Mapping[str, str]) -> None:
    assert len(shipped) >= 10
    for name, statement in shipped.items():
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name)
        assert statement == statement.strip()
        assert not statement.endswith(";"), name
        assert "-- name:" not in statement, name
        assert statement.split(None, 1)[0].upper() in {
            "SELECT",
            "WITH",
            "INSERT",
            "UPDATE",
            "DELETE",
            "CREATE",
            "ANALYZE",
            "ALTER",
            "VACUUM",
            "LISTEN",  # notifyq.wait on the caller's own connection
            "UNLISTEN",
        }, name


def test_only_the_benchmarks_change_or_vacuum_the_schema() -> None:
    for name, statement in sql.queries.items():
        assert statement.split(None, 1)[0].upper() not in {"ALTER", "VACUUM"}, name


def test_bench_statements_left_the_main_file() -> None:
    assert not set(sql.queries) & set(bench.queries)
    assert not [n for n in sql.queries if n.startswith(("bench_", "scale_"))]


def test_no_two_statements_are_the_same() -> None:
    for shipped in (sql.queries, bench.queries):
        by_text: dict[str, str] = {}
        for name, statement in shipped.items():
            assert statement not in by_text, f"{name} repeats {by_text[statement]}"
            by_text[statement] = name


def test_shipped_queries_are_read_only() -> None:
    with pytest.raises(TypeError):
        sql.queries["claim"] = "SELECT 1"  # type: ignore[index]


def test_the_scan_finds_the_lookups() -> None:
    # Guards the tests below against a regex that silently matches nothing.
    used = names_used_by_the_code()
    assert {"claim", "finish", "enqueue", "cancel", "retry", "prune"} <= used
    assert {"insert_probe", "enqueue_noops", "count_done"} <= names_used_by_the_code(_BENCH_LOOKUP)


@pytest.mark.parametrize("name", sorted(names_used_by_the_code()))
def test_every_query_the_code_uses_exists(name: str) -> None:
    assert name in sql.queries


@pytest.mark.parametrize("name", sorted(names_used_by_the_code(_BENCH_LOOKUP)))
def test_every_bench_query_the_code_uses_exists(name: str) -> None:
    assert name in bench.queries


def test_every_bench_statement_is_used() -> None:
    assert set(bench.queries) == names_used_by_the_code(_BENCH_LOOKUP)


def test_each_statement_sits_in_the_section_of_the_module_that_runs_it() -> None:
    # A section header names the module (or package) whose code runs its statements.
    text = (PACKAGE / "queries.sql").read_text(encoding="utf-8")
    parts = re.split(r"^-- (\w+) — ([\w/]+\.py|[\w/]+/)", text, flags=re.MULTILINE)
    assert len(parts) > 2 * 8, "expected the file in sections"
    misplaced = []
    for where, body in zip(parts[2::3], parts[3::3], strict=True):
        files = (
            sorted((PACKAGE / where).glob("**/*.py")) if where.endswith("/") else [PACKAGE / where]
        )
        code = "".join(path.read_text(encoding="utf-8") for path in files)
        for name in sql.parse(body):
            if not re.search(rf"""["']{name}["']""", code):
                misplaced.append(f"{name} (under {where})")
    assert misplaced == []
    assert sorted(sql.parse(text)) == sorted(sql.queries)
