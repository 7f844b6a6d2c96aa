"""Django's database connection as notifyq needs it: a URL, and its psycopg connection
(light: what ``enqueue`` imports loads neither trio nor asyncpg)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode


def url_of(connection: Any) -> str:
    """A ``postgresql://`` URL of a Django connection's settings (for the worker and
    ``notifyq migrate``, which use asyncpg): host and port as query parameters so that a
    Unix socket directory works too."""
    params = connection.settings_dict
    if connection.vendor != "postgresql":
        raise ValueError(f"notifyq needs a PostgreSQL database, got {connection.vendor!r}")
    user = quote(params.get("USER") or "", safe="")
    password = quote(params.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    query = {k: v for k, v in (("host", params.get("HOST")), ("port", params.get("PORT"))) if v}
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{auth}/{quote(params.get('NAME') or '', safe='')}{tail}"


def psycopg_of(connection: Any) -> Any:
    """The psycopg connection under Django's, connecting first: ``connection.connection``
    is None until Django has run a query in this thread."""
    connection.ensure_connection()
    return connection.connection
