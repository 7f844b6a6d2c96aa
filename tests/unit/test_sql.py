"""Named queries: the parser, and that every name the code looks up exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import notifyq
from notifyq import sql

PACKAGE = Path(notifyq.__file__).parent
_LOOKUP = re.compile(r"""queries\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]""")


def names_used_by_the_code() -> set[str]:
    used: set[str] = set()
    for path in sorted(PACKAGE.glob("*.py")):
        used.update(_LOOKUP.findall(path.read_text(encoding="utf-8")))
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


def test_shipped_queries_are_clean_statements() -> None:
    assert len(sql.queries) >= 10
    for name, statement in sql.queries.items():
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name)
        assert statement == statement.strip()
        assert not statement.endswith(";"), name
        assert "-- name:" not in statement, name
        assert statement.split(None, 1)[0].upper() in {
            "SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "CREATE", "ANALYZE", "ALTER",
            "VACUUM"}, name
    # Only the benchmarks' scratch-database setup changes or vacuums the schema.
    for name, statement in sql.queries.items():
        if statement.split(None, 1)[0].upper() in {"ALTER", "VACUUM"}:
            assert name.startswith("bench_"), name


def test_shipped_queries_are_read_only() -> None:
    with pytest.raises(TypeError):
        sql.queries["claim"] = "SELECT 1"  # type: ignore[index]


def test_the_scan_finds_the_lookups() -> None:
    # Guards the test below against a regex that silently matches nothing.
    used = names_used_by_the_code()
    assert {"claim", "finish", "enqueue", "cancel", "retry", "prune"} <= used


@pytest.mark.parametrize("name", sorted(names_used_by_the_code()))
def test_every_query_the_code_uses_exists(name: str) -> None:
    assert name in sql.queries
