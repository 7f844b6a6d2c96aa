"""Schema migrations: numbered plain-SQL files, applied in order under an advisory lock.

Files are named ``NNNN_name.sql``. They live in ``migrations/`` at the top of the source
tree and are shipped inside the wheel as ``notifyq/migrations``. Each is applied in its own
transaction and recorded in ``notifyq.schema_migrations`` with a checksum.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from notifyq import db, errors, logs, sql

log = logs.get("notifyq.migrations")

# pg_advisory_lock key: any process running `migrate` takes it, so two at once are safe.
LOCK_KEY = 0x6E6F7469  # "noti"

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _migrations_dir() -> Path:
    shipped = resources.files("notifyq").joinpath("migrations")
    if shipped.is_dir():
        return Path(str(shipped))
    source_tree = Path(__file__).resolve().parent.parent / "migrations"
    if source_tree.is_dir():
        return source_tree
    raise errors.SchemaError("no migrations found: the notifyq installation is incomplete")


def available() -> list[Migration]:
    found = []
    for path in sorted(_migrations_dir().glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise errors.SchemaError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise errors.SchemaError(f"two migration files share a version: {versions}")
    return found


async def _applied(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval(sql.queries["migrations_ledger_exists"])
    if not exists:
        return {}
    rows = await conn.fetch(sql.queries["migrations_applied"])
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(database: db.Database) -> list[Migration]:
    """Apply every pending migration; returns those applied (empty when up to date)."""
    wanted = available()

    async def apply(conn: asyncpg.Connection) -> list[Migration]:
        # A session-level lock on one connection: concurrent `migrate` runs queue here and
        # find the work already done when they get the lock.
        await conn.execute(sql.queries["migrate_lock"], LOCK_KEY)
        try:
            await conn.execute(sql.queries["migrate_bootstrap"])
            done = await _applied(conn)
            for m in wanted:
                if m.version in done and done[m.version] != m.checksum:
                    log.warning(
                        "migration.changed",
                        version=m.version,
                        name=m.name,
                        why="applied file differs from the shipped one",
                    )
            applied = []
            for m in wanted:
                if m.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        sql.queries["migration_record"], m.version, m.name, m.checksum
                    )
                applied.append(m)
            return applied
        finally:
            await conn.execute(sql.queries["migrate_unlock"], LOCK_KEY)

    applied = await database.run(apply)
    for m in applied:
        log.info("migration.applied", version=m.version, name=m.name)
    if not applied:
        log.info("migration.up_to_date", version=wanted[-1].version if wanted else 0)
    return applied


async def check(database: db.Database) -> None:
    """Raise SchemaError unless every shipped migration has been applied."""
    wanted = available()
    done = await database.run(_applied)
    missing = [m for m in wanted if m.version not in done]
    if missing:
        current = max(done, default=0)
        raise errors.SchemaError(
            f"the database schema is at version {current}, this notifyq needs "
            f"{wanted[-1].version}: run `notifyq migrate`"
        )
