"""``manage.py notifyq_migrate [--database ALIAS]``: apply notifyq's migrations now (what
``manage.py migrate`` does after Django's own)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from notifyq.contrib.django import schema


class Command(BaseCommand):
    help = "Apply notifyq's pending migrations to a Django database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="Django database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        applied = schema.migrate(connections[options["database"]])
        self.stdout.write(f"notifyq: {len(applied)} migration(s) applied")
