"""Database roles: the privileges ``notifyq roles`` grants a producer or a worker role.

Not a read: these statements change who may do what (run only when asked to apply).
"""

from __future__ import annotations

from collections.abc import Sequence

from notifyq import db, errors, sql


async def grant(
    database: db.Database, wanted: Sequence[tuple[str, str]], *, apply: bool
) -> list[str]:
    """The GRANT statements for each (privileges, role) of ``wanted``, privileges being
    "producer", "worker" or "operator"; run (all or none, in one transaction) when ``apply``."""

    async def statements(conn: db.Connection) -> list[str]:
        done: list[str] = []
        for privileges, role in wanted:
            # Each role's base grants, then those of later features, which live in functions
            # of their own so that a migration replacing the base function keeps them.
            names = {
                "producer": ("grant_producer", "grant_producer_unique"),
                "worker": ("grant_worker", "grant_worker_schedules", "grant_worker_functions"),
                "operator": ("grant_operator",),
            }[privileges]
            for query in names:
                try:
                    rows = await conn.fetch(sql.queries[query], role, apply)
                except db.CONNECTION_ERRORS:
                    raise
                except Exception as exc:  # PostgreSQL's refusal: no such role, no privilege
                    raise errors.NotifyqError(f"cannot grant to role {role!r}: {exc}") from None
                done += [f"{r['statement']};" for r in rows]
        return done

    return await database.run_in_transaction(statements)
