"""Start-up: open the database, and make sure its schema is the one this code expects.

On the embedded server (``DATABASE_URL`` unset) notifyq owns the database and migrates it;
on an external one it only checks, so that a deploy with a newer schema never runs against
older code by surprise (``notifyq migrate`` changes it, on purpose).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from notifyq import db, errors, logs, migrations
from notifyq.serving import embedded
from notifyq.settings import Settings

log = logs.get("notifyq.serving")

DB_WAIT_MAX_S = 10.0


async def migrate(settings: Settings, *, check: bool) -> list[migrations.Migration]:
    """``notifyq migrate``: apply the pending migrations, and return them; with ``check``,
    change nothing and raise :class:`~notifyq.errors.SchemaError` unless every one is
    applied."""
    dsn = await embedded.resolve_dsn(settings)
    async with db.open_database(dsn, min_size=1, max_size=2) as database:
        if check:
            await migrations.check(database)
            return []
        return await migrations.migrate(database)


@asynccontextmanager
async def open_db(
    settings: Settings, *, pool_size: int | None = None
) -> AsyncIterator[db.Database]:
    """Connect, and make sure the schema is ready: migrated on the embedded server,
    checked (never changed) on an external one."""
    dsn = await embedded.resolve_dsn(settings)
    log.debug("db.connect", url=logs.redact(dsn))
    size = pool_size or settings.pool_size
    async with db.open_database(
        dsn,
        min_size=min(2, size),
        max_size=size,
        statement_cache_size=settings.statement_cache_size,
    ) as database:
        log.info("db.connected", url=logs.redact(dsn))
        if settings.database_url is None:
            await migrations.migrate(database)
        else:
            await migrations.check(database)
        yield database


@asynccontextmanager
async def open_db_when_ready(
    settings: Settings, stop: trio.Event, *, pool_size: int | None = None
) -> AsyncIterator[db.Database | None]:
    """:func:`open_db` for the long-running commands: while the database cannot be reached
    (down, or every connection slot taken), wait and try again, with one ``db.waiting``
    line per try (1, 2, 4, ... up to 10 s apart), instead of exiting. Yields None when
    ``stop`` is set meanwhile. Any other error (bad password, outdated schema) still ends
    the command."""
    delay = 1.0
    while True:
        async with AsyncExitStack() as stack:
            try:
                database = await stack.enter_async_context(open_db(settings, pool_size=pool_size))
            except errors.DatabaseUnavailable as exc:
                log.warning("db.waiting", error=str(exc), retry_in_s=delay)
            else:
                yield database
                return
        with trio.move_on_after(delay):
            await stop.wait()
        if stop.is_set():
            yield None
            return
        delay = min(delay * 2, DB_WAIT_MAX_S)
