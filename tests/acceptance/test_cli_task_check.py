"""The one task check as users meet it: `notifyq enqueue` (bad input is exit 2 and one line)
and a least-privilege producer role on its own connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

import notifyq
from tests.acceptance.proc import scalar
from tests.acceptance.test_cli import _env, nq
from tests.acceptance.test_roles import Roles, cli, roles  # noqa: F401 (a fixture)


def test_enqueue_refuses_what_the_database_would_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    # A byte that is not UTF-8 in argv becomes a lone surrogate in Python's str.
    bad_kind = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"notifyq", b"enqueue", b"k\xff"],
        capture_output=True,
        text=True,
        env=_env(database_url),
        cwd=tmp_path,
        timeout=30,
    )
    assert bad_kind.returncode == 2, bad_kind.stderr
    assert bad_kind.stderr == (
        "notifyq: invalid kind 'k\\udcff': expected valid Unicode (no lone surrogates)\n"
    )
    bad_meta = nq(database_url, tmp_path, "enqueue", "noop", "--meta", "[1]")
    assert (bad_meta.code, bad_meta.err) == (
        2,
        "notifyq: invalid meta [1]: expected a JSON object\n",
    ), bad_meta
    tiny = nq(database_url, tmp_path, "enqueue", "noop", "--timeout", "0.1ms")
    assert tiny.code == 2 and tiny.err.startswith("notifyq: invalid timeout 0.0001:"), tiny
    assert scalar(database_url, "SELECT count(*) FROM notifyq.tasks") == "0"
    ok = nq(database_url, tmp_path, "enqueue", "noop", "--meta", '{"origin": "cli"}')
    assert ok.code == 0, ok
    assert scalar(database_url, "SELECT meta FROM notifyq.tasks") == '{"origin": "cli"}'


def test_a_producer_role_uses_every_option_on_its_own_connection(roles: Roles) -> None:  # noqa: F811
    assert cli(roles.owner_url, "roles", "--producer", roles.producer).returncode == 0
    options: dict[str, Any] = {
        "unique_key": "digest:1",
        "concurrency_key": "customer-9",
        "meta": {"origin": "web"},
    }
    with psycopg.connect(roles.url(roles.producer)) as conn:
        first = notifyq.enqueue(conn, "digest", 1, **options)
        # The key is live: nothing added, and the producer is not shown the other task.
        assert notifyq.enqueue(conn, "digest", 2, **options) is None
        many = notifyq.enqueue_many(
            conn, [{"kind": "a", "meta": {"n": 1}}, {"kind": "b", **options}]
        )
        assert many[1] is None
    assert (
        scalar(
            roles.owner_url,
            f"SELECT kind, unique_key, concurrency_key, meta FROM notifyq.tasks WHERE id = {first}",
        )
        == 'digest|digest:1|customer-9|{"origin": "web"}'
    )
    assert scalar(roles.owner_url, "SELECT count(*) FROM notifyq.tasks") == "2"
