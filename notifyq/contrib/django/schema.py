"""notifyq's schema in a Django database: its migrations, applied on asyncpg under trio
(after ``manage.py migrate``, and by ``manage.py notifyq_migrate``)."""

from __future__ import annotations

from typing import Any

import structlog
import trio

from notifyq import db, logs, migrations
from notifyq.contrib.django.connection import url_of


def migrate(connection: Any) -> list[migrations.Migration]:
    """Apply notifyq's pending migrations to the database of a Django connection (quietly,
    unless the application configured structlog: ``manage.py migrate`` prints its own)."""
    if not structlog.is_configured():
        logs.configure("warning")

    async def apply() -> list[migrations.Migration]:
        async with db.open_database(url_of(connection), min_size=1, max_size=1) as database:
            return await migrations.migrate(database)

    return trio.run(apply)
