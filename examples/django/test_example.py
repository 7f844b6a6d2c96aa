"""The example project against a real PostgreSQL (DATABASE_URL, an empty database): the
schema through ``manage.py migrate``, ``django.tasks`` on notifyq, the worker, the admin."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.test import Client
from django.utils import timezone
from shop.jobs import tally
from shop.tasks import add, refuse, send_receipt, shout, which_attempt

from notifyq.contrib.django import NotifyqBackend

HERE = Path(__file__).parent


def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """``check()`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


@pytest.fixture(scope="session", autouse=True)
def migrated() -> None:
    # The database is empty: `migrate` brings Django's tables and notifyq's schema.
    assert rows("SELECT to_regclass('notifyq.tasks')") == [(None,)]
    # As a user runs it (and so that this process never loads trio: an enqueue does not).
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=HERE, check=True)
    assert rows("SELECT to_regclass('notifyq.tasks')::text") == [("notifyq.tasks",)]


def test_notifyq_migrate_and_the_apps_migrations_are_up_to_date() -> None:
    def manage(*args: str) -> str:
        ran = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=HERE, capture_output=True, text=True
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        return ran.stdout

    assert manage("notifyq_migrate") == "notifyq: 0 migration(s) applied\n"
    # The app's Django migration matches its models: a user's `makemigrations --check` passes.
    manage("makemigrations", "notifyq", "--check", "--dry-run")
    # The children of --processes would start without Django: refused as bad input.
    refused = subprocess.run(
        [sys.executable, "manage.py", "notifyq_worker", "--processes", "2"],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    assert (refused.returncode, refused.stderr) == (
        2,
        "CommandError: notifyq_worker runs one process (--processes / PROCESSES must be 1): "
        "start several commands instead\n",
    )


def test_enqueue_before_django_connected_adds_the_task() -> None:
    connections.close_all()  # the old README's recipe failed here: connection.connection is None
    result = send_receipt.enqueue(order_id=7, email="a@example.org")
    assert rows(
        "SELECT kind, queue, priority, payload, status FROM notifyq.tasks WHERE id = %s",
        int(result.id),
    ) == [
        (
            "shop.tasks.send_receipt",
            "emails",
            10,
            '{"args": [], "kwargs": {"email": "a@example.org", "order_id": 7}}',
            "pending",
        )
    ]
    assert result.status == TaskResultStatus.READY


def test_a_process_that_only_enqueues_loads_neither_trio_nor_asyncpg() -> None:
    # In a process of its own: this one's pytest plugins (anyio's) import trio.
    code = (
        "import django, sys; django.setup()\n"
        "from shop.tasks import add\n"
        "add.enqueue(1, 1).id and print(sorted({'trio', 'asyncpg'} & set(sys.modules)))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, check=True
    )
    assert ran.stdout == "[]\n"


def test_the_task_exists_iff_the_transaction_commits() -> None:
    before = rows("SELECT count(*) FROM notifyq.tasks")
    with pytest.raises(RuntimeError), transaction.atomic():
        add.enqueue(1, 2)
        raise RuntimeError("rolled back")
    assert rows("SELECT count(*) FROM notifyq.tasks") == before
    client = Client()
    with pytest.raises(RuntimeError, match="payment refused"):
        client.post("/orders/", {"order_id": 1, "email": "b@example.org", "fail": "1"})
    assert rows("SELECT count(*) FROM notifyq.tasks") == before
    placed = client.post("/orders/", {"order_id": 2, "email": "b@example.org"}).json()
    assert rows("SELECT status FROM notifyq.tasks WHERE id = %s", int(placed["task"])) == [
        ("pending",)
    ]


def test_run_after_priority_and_queues_are_checked_and_kept() -> None:
    later = timezone.now() + timedelta(hours=1)
    result = add.using(priority=-100, run_after=later).enqueue(a=1, b=1)
    assert rows("SELECT priority, run_at FROM notifyq.tasks WHERE id = %s", int(result.id)) == [
        (-100, later)
    ]
    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        add.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue 'bulk' is not valid"):
        add.using(queue_name="bulk")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("999999")
    with pytest.raises(ValueError, match=r"unknown OPTIONS of task backend 'x': \['NOPE'\]"):
        NotifyqBackend("x", {"OPTIONS": {"NOPE": 1}})


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "LOG_LEVEL": "warning", "FETCH_INTERVAL": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "notifyq_worker", "--workers", "4"],
        cwd=HERE,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def ran(result: Any) -> Any:
    """The result once its task ended (refreshed from the database)."""

    def finished() -> Any:
        result.refresh()
        return result if result.is_finished else None

    return until(finished)


def test_the_worker_runs_django_tasks_and_get_result_reports_them(worker: Any) -> None:
    added = ran(add.enqueue(2, b=3))
    assert (added.status, added.return_value, added.attempts) == (TaskResultStatus.SUCCESSFUL, 5, 1)
    assert added.started_at is not None and added.finished_at is not None

    failed = ran(refuse.enqueue("out of stock"))
    assert failed.status == TaskResultStatus.FAILED
    (error,) = failed.errors
    assert error.exception_class is ValueError
    assert "ValueError: out of stock" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value

    assert ran(which_attempt.enqueue()).return_value == 1
    assert ran(shout.enqueue("hi")).return_value == "HI"
    assert ran(tally.enqueue(1, 2, 3)).return_value == 6  # found through MODULES

    async def from_asyncio() -> Any:
        result = await add.aenqueue(20, 22)
        while not result.is_finished:
            await asyncio.sleep(0.05)
            await result.arefresh()
        return await add.aget_result(result.id)

    assert asyncio.run(asyncio.wait_for(from_asyncio(), 30)).return_value == 42

    # task_started and task_finished were sent in the worker: Django's own receivers log them.
    worker.send_signal(signal.SIGINT)
    logged = worker.communicate(timeout=30)[1]
    assert f"Task id={added.id} path=shop.tasks.add state=RUNNING" in logged
    assert f"Task id={added.id} path=shop.tasks.add state=SUCCESSFUL" in logged
    assert f"Task id={failed.id} path=shop.tasks.refuse state=FAILED" in logged


def test_the_admin_lists_filters_cancels_and_retries() -> None:
    pending = add.enqueue(5, 5)
    user = User.objects.create_superuser("admin", "admin@example.org", "pw")
    client = Client()
    client.force_login(user)
    listed = client.get("/admin/notifyq/task/?status__exact=pending&kind=shop.tasks.add")
    assert listed.status_code == 200
    assert f">{pending.id}<" in listed.content.decode()
    change = "/admin/notifyq/task/"
    client.post(change, {"action": "cancel", "_selected_action": [pending.id]})
    assert rows("SELECT status FROM notifyq.tasks WHERE id = %s", int(pending.id)) == [
        ("cancelled",)
    ]
    assert pending.status == TaskResultStatus.READY
    assert default_task_backend.get_result(pending.id).status == TaskResultStatus.FAILED
    client.post(change, {"action": "retry", "_selected_action": [pending.id]})
    assert rows("SELECT status FROM notifyq.tasks WHERE id = %s", int(pending.id)) == [("pending",)]
