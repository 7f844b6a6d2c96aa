"""schema.sql matches the schema the migrations build, as pg_dump sees both."""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

from tests import pg

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.sql"

# pg_dump's own comment headers ("-- Name: tasks; Type: TABLE; ..."), its SET lines and the
# random key of \restrict / \unrestrict; comments inside function bodies are indented and
# stay (they are part of the function's source).
_NOISE = re.compile(
    r"^(--( (Name|Data for Name|Dumped (from|by)|PostgreSQL database dump)\b.*)?"
    r"|SET \w+ = .*"
    r"|SELECT pg_catalog\.set_config\('search_path', '', false\);"
    r"|\\(un)?restrict \w+)$"
)


def apply_file(url: str, path: Path) -> None:
    result = subprocess.run(
        [
            str(pg.BIN / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
            url,
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{path.name} does not apply: {result.stderr.strip()}"


def dump(url: str) -> list[str]:
    """Schema notifyq, normalised: its objects and its rows, without the migrations ledger's
    rows (schema.sql does not fill the ledger)."""
    result = subprocess.run(
        [
            str(pg.BIN / "pg_dump"),
            "--schema=notifyq",
            "--exclude-table-data=notifyq.schema_migrations",
            "-d",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if not _NOISE.match(line)]
    # Blank lines only separate pg_dump's sections: collapse runs of them.
    return [
        line for i, line in enumerate(lines) if line.strip() or (i > 0 and lines[i - 1].strip())
    ]


def differences(migrated: list[str], from_file: list[str]) -> str:
    return "\n".join(
        difflib.unified_diff(
            migrated, from_file, "migrations (pg_dump)", "schema.sql (pg_dump)", lineterm=""
        )
    )


def test_schema_file_matches_the_migrations(database_url: str, empty_database_url: str) -> None:
    # database_url: a copy of an empty database migrated by `notifyq migrate`.
    apply_file(empty_database_url, SCHEMA_FILE)
    diff = differences(dump(database_url), dump(empty_database_url))
    assert not diff, (
        "schema.sql differs from the schema the migrations build; update schema.sql "
        f"(lines with - are the migrations', + are schema.sql's):\n{diff}"
    )


def test_a_schema_that_drifted_is_reported_with_a_diff(
    database_url: str, empty_database_url: str
) -> None:
    apply_file(empty_database_url, SCHEMA_FILE)
    pg.psql(empty_database_url, "CREATE INDEX tasks_kind_idx ON notifyq.tasks (kind)")
    pg.psql(empty_database_url, "UPDATE notifyq.maintenance SET last_run = 'epoch'")
    diff = differences(dump(database_url), dump(empty_database_url))
    added = [line for line in diff.splitlines() if line.startswith("+") and line[1:2] != "+"]
    assert "+CREATE INDEX tasks_kind_idx ON notifyq.tasks USING btree (kind);" in added
    assert any(line.startswith("+reaper\t1970-01-01") for line in added), diff
