"""Upgrades under load: this version's `notifyq migrate` runs while workers of the previous
version serve a steady load (docs/operations.md, "Upgrades while workers run").

The previous version is real code: the newest commit on the first-parent line of HEAD
whose ``migrations/`` holds a strict subset of this work tree's, exported with
``git archive`` (``notifyq/`` and ``migrations/``) into a temporary directory and run from
there (``python -m`` looks in its working directory first). The database is migrated by
that version's own `notifyq migrate`, two of its workers take a steady load, and then this
version's `notifyq migrate` applies the rest; a worker of this version and one more of the
previous version join, the load goes on, and every task id inserted must end with exactly
one 'done' event, with no worker exit.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import trio

import notifyq
from notifyq import settings
from notifyq.bench import harsh
from notifyq.bench.harsh_faults import Faulting
from notifyq.bench.worker_processes import Plan

pytestmark = pytest.mark.slow  # the previous version checked out and run under load

REPO = Path(notifyq.__file__).resolve().parent.parent
GIT_TIMEOUT_S = 30


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=GIT_TIMEOUT_S,
    ).stdout


def previous_version(dest: Path) -> tuple[str, list[str]]:
    """Export the previous version (see the module's docstring) to ``dest``; its commit
    and the migrations it ships. Skips the test without git history."""
    ours = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    try:
        commits = _git("rev-list", "--first-parent", "--max-count=500", "HEAD").split()
        for commit in commits:
            theirs = sorted(
                Path(name).name
                for name in _git("ls-tree", "--name-only", commit, "migrations/").split()
                if name.endswith(".sql")
            )
            if theirs and set(theirs) < set(ours):
                archive = subprocess.run(
                    ["git", "-C", str(REPO), "archive", commit, "notifyq", "migrations"],
                    capture_output=True,
                    check=True,
                    timeout=GIT_TIMEOUT_S,
                ).stdout
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(dest, filter="data")
                return commit, theirs
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no git history to take the previous version from: {exc}")
    pytest.skip("no earlier commit with fewer migrations")


def env(url: str) -> dict[str, str]:
    own = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    return {**own, "DATABASE_URL": url, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}


async def notifyq_cli(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m notifyq ARGS`` from the package in ``cwd``, to its end."""
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "notifyq", *args],
            cwd=cwd,
            env=env(url),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_migrate_under_load_of_the_previous_versions_workers(
    empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    old = tmp_path / "previous"
    commit, old_migrations = previous_version(old)
    ours = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    print(f"\nprevious version {commit[:10]}: applies {sorted(set(ours) - set(old_migrations))}")
    # The previous version's own migrate builds its schema.
    done = await notifyq_cli(url, old, "migrate")
    assert done.returncode == 0, done.stderr.decode()

    # This version refuses to serve the older schema (one line, exit 1), and says so to
    # the init containers' check.
    answers: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def ask(*args: str) -> None:
        answers[args[0]] = await notifyq_cli(url, REPO, *args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "worker")
        nursery.start_soon(ask, "migrate", "--check")
    assert answers["worker"].returncode == 1
    assert "run `notifyq migrate`" in answers["worker"].stderr.decode().splitlines()[-1]
    assert answers["migrate"].returncode == 1

    async def upgrade(c: Faulting) -> None:
        began = trio.current_time()
        migrated = await notifyq_cli(url, REPO, "migrate")
        c.log.notes["migrate_exit"] = migrated.returncode
        c.log.notes["migrate_said"] = migrated.stdout.decode().strip()
        c.log.notes["migrate_s"] = round(trio.current_time() - began, 2)
        c.log.actions = 1
        # A worker of this version joins the old ones (a rolling replacement begins), and
        # one of the previous version starts on the newer schema (a pod rescheduled).
        await c.processes.start(str(REPO))
        await c.processes.start()
        await harsh.wait_for_workers(c.database, c.processes, 4)
        await trio.sleep(max(0.0, c.plan.fault_s - (trio.current_time() - began)))

    plan = Plan(
        "upgrade",
        rate=100,
        before_s=1.0,
        fault_s=1.0,  # at least: the fault lasts as long as the migration and the start-ups
        after_s=1.0,
        lease_s=2,
        drain_timeout_s=40,
        worker_dir=str(old),
    )
    report = await harsh.run_scenario(url, plan, fault=upgrade)
    shown = {k: v for k, v in report.items() if k != "unstructured_log_lines"}
    print(f"FAULT REPORT upgrade from {commit[:10]}: {json.dumps(shown)}")
    assert report["migrate_exit"] == 0
    assert report["migrate_said"] == f"applied {len(ours) - len(old_migrations)} migration(s)"
    assert report["tasks"] > 300
    assert (report["lost"], report["twice"]) == (0, 0)
    assert report["worker_crashes"] == []
    assert report["unstructured_log_lines"] == []
