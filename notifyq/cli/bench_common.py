"""What every `notifyq bench` command shares: its settings (LOG_LEVEL warning unless told
otherwise) and the report it prints (a table, or JSON)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from notifyq.cli.common import settings_from
from notifyq.settings import Settings


def bench_settings(ctx: click.Context, **flags: Any) -> Settings:
    # LOG_LEVEL warning unless the flag or the environment says otherwise.
    level = (ctx.obj or {}).get("log_level") or os.environ.get("LOG_LEVEL") or "warning"
    return settings_from(ctx, log_level=level, **flags)


def print_report(
    result: dict[str, Any], as_json: bool, rows: list[tuple[str, str]], note: str = ""
) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    r = result
    click.echo(f"notifyq bench {r['benchmark']}: PostgreSQL {r['server_version']} ({r['server']})")
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo("  settings: " + " ".join(f"{k}={v}" for k, v in r["settings"].items()))
    click.echo("  " + "  ".join(f"{name:>9}" for name, _ in rows))
    click.echo("  " + "  ".join(f"{value:>9}" for _, value in rows))
    if note:
        click.echo(f"  {note}")
