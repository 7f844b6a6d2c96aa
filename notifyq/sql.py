"""Named SQL queries, loaded once from ``queries.sql``.

Each query sits under a ``-- name: NAME`` header followed by comment lines saying what it
does. Code looks queries up by name: ``sql.queries["claim"]``. Nothing is assembled from
user text; values always travel as bind parameters. A sub-package with statements of its
own (the benchmarks' ``bench.sql``) reads its file with :func:`load`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Final

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a file of named queries into ``{name: statement}``."""
    parts = _HEADER.split(text)
    found: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        statement = "\n".join(
            line for line in body.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not statement:
            raise ValueError(f"query {name!r} is empty")
        found[name] = statement.rstrip(";")
    return found


def load(package: str, filename: str) -> Mapping[str, str]:
    """The named queries of the file ``filename`` shipped in ``package``, read-only."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return MappingProxyType(parse(text))


queries: Final = load("notifyq", "queries.sql")
