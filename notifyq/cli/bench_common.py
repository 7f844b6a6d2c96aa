"""What every `notifyq bench` command shares: its settings (LOG_LEVEL warning unless told
otherwise) and the report it prints (a table, or JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from notifyq.bench.common import delayed
from notifyq.cli.common import duration, run, settings_from
from notifyq.settings import Settings

T = TypeVar("T")

rtt_option = click.option(
    "--rtt",
    "rtt_s",
    callback=duration,
    help="Add this much to every round trip to the database (e.g. 1ms): every connection "
    "goes through a delaying proxy, half the delay each way.",
)


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


def run_at(
    settings: Settings, rtt_s: float | None, measure: Callable[[Settings], Awaitable[T]]
) -> T:
    """``measure(settings)`` in trio, through a delaying proxy when ``--rtt`` is given."""
    return run(lambda: delayed(settings, rtt_s, measure))
