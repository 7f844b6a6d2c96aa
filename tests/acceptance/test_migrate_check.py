"""`notifyq migrate --check`: the Kubernetes init containers' wait for the schema."""

from __future__ import annotations

from tests import pg
from tests.acceptance.proc import Notifyq


def run(url: str, *args: str) -> tuple[int, str, str]:
    p = Notifyq(url, *args, env={"LOG_LEVEL": "warning"})
    try:
        code = p.wait(timeout=60)
        out = p.proc.stdout.read() if p.proc.stdout else ""
        return code, out, p.stderr()
    finally:
        p.close()


def test_check_fails_on_an_unmigrated_database_and_changes_nothing(
    empty_database_url: str,
) -> None:
    code, _, err = run(empty_database_url, "migrate", "--check")
    assert code == 1
    assert "the database schema is at version 0" in err and "run `notifyq migrate`" in err
    assert pg.psql(empty_database_url, "SELECT to_regnamespace('notifyq') IS NULL") == "t"


def test_check_passes_once_migrated(database_url: str) -> None:
    code, out, err = run(database_url, "migrate", "--check")
    assert (code, out.strip()) == (0, "schema is up to date"), err
