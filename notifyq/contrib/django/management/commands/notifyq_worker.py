"""``manage.py notifyq_worker [notifyq worker's options]``: ``notifyq worker`` with Django
set up, running the Django tasks of every NotifyqBackend.

The same command, engine and settings as ``notifyq worker`` (flags, environment, ``.env``);
two defaults come from Django: ``DATABASE_URL`` is the backend's database and ``QUEUES``
the backend's queue names, unless given.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.tasks import task_backends

from notifyq.contrib.django import connection
from notifyq.contrib.django.backend import NotifyqBackend

APP = "notifyq.contrib.django.worker:app"
# Django's own options, which manage.py has already acted on.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


class Command(BaseCommand):
    help = "Run notifyq workers for Django's tasks (the options of `notifyq worker --help`)."

    def run_from_argv(self, argv: list[str]) -> None:
        kept = [a for a in argv[2:] if not a.startswith(_DJANGO_OPTIONS)]
        try:
            self.handle(*kept)
        except CommandError as exc:  # as BaseCommand.run_from_argv reports it
            self.stderr.write(f"CommandError: {exc}")
            raise SystemExit(exc.returncode) from None

    def handle(self, *args: Any, **options: Any) -> None:
        from notifyq.cli import main

        if (
            any(a.startswith("--processes") for a in args)
            or os.environ.get("PROCESSES", "1") != "1"
        ):
            # The children of `--processes` are `python -m notifyq` processes, without Django.
            raise CommandError(
                "notifyq_worker runs one process (--processes / PROCESSES must be 1): "
                "start several commands instead",
                returncode=2,
            )
        backend = _backend()
        if "DATABASE_URL" not in os.environ:
            os.environ["DATABASE_URL"] = connection.url_of(connections[backend.database])
        if "QUEUES" not in os.environ and backend.queues:
            os.environ["QUEUES"] = ",".join(sorted(backend.queues))
        main.main(args=["worker", *args, "--app", APP], prog_name="manage.py notifyq_worker")


def _backend() -> NotifyqBackend:
    for alias in task_backends.settings:
        backend = task_backends[alias]
        if isinstance(backend, NotifyqBackend):
            return backend
    raise SystemExit(
        "manage.py notifyq_worker: no TASKS backend is notifyq.contrib.django.NotifyqBackend"
    )
