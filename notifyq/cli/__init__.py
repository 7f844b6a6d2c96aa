"""The ``notifyq`` command line (click): the group ``main`` and where every command joins it.

Settings come from flags, then the environment, then ``.env``, then defaults. A bad value
exits with status 2 and one line naming the setting.

- :mod:`~notifyq.cli.common`: exit codes, settings from flags, the trio runner
- :mod:`~notifyq.cli.serve`: serve, worker, web, migrate
- :mod:`~notifyq.cli.tasks`: enqueue, seed, status, cancel, retry, history, wait, prune
- :mod:`~notifyq.cli.console`: tasks list, count, show, failures, retry, cancel, run-now,
  priority (the console's filters and bulk actions)
- :mod:`~notifyq.cli.database`: dsn, db start|stop|status (the embedded server's lifetime)
- :mod:`~notifyq.cli.queues`: queue set, queue list (per-queue limits)
- :mod:`~notifyq.cli.schedules`: schedule add, list, pause, resume, remove
- :mod:`~notifyq.cli.deploy`: health (a container's liveness check), roles (least-privilege grants)
- :mod:`~notifyq.cli.bench` and :mod:`~notifyq.cli.bench_stress` (several processes, big
  tables, faults, soak): bench and its subcommands (over :mod:`notifyq.bench`), imported
  only when ``bench`` runs: the benchmarks cost every other command half its start-up
  (tests/unit/test_cli_imports.py)
"""

from __future__ import annotations

import importlib

import click

from notifyq.cli import batches, console, database, deploy, queues, schedules, serve, tasks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--database-url", help="PostgreSQL URL [DATABASE_URL; unset: embedded server]")
@click.option("--data-dir", help="Embedded server data directory [NOTIFYQ_DATA_DIR=.notifyq]")
@click.option("--log-level", help="debug, info, warning or error [LOG_LEVEL=info]")
@click.option("--log-format", help="console or json [LOG_FORMAT=console]")
@click.version_option(package_name="notifyq")
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    data_dir: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """notifyq: a PostgreSQL task queue woken by NOTIFY, run on trio."""
    ctx.obj = {
        "database_url": database_url,
        "data_dir": data_dir,
        "log_level": log_level,
        "log_format": log_format,
    }


def _add(group: click.Group, *commands: click.Command) -> None:
    for command in commands:
        group.add_command(command)


_add(main, serve.serve, serve.worker, serve.web, serve.migrate)
_add(
    main,
    tasks.enqueue,
    tasks.seed,
    tasks.status,
    tasks.cancel,
    tasks.retry,
    tasks.history,
    tasks.wait,
    tasks.prune,
    database.dsn,
    database.db,
)
_add(main, deploy.health, deploy.roles, queues.queue, schedules.schedule, batches.batches)
_add(main, console.tasks)


class _Bench(click.Group):
    """``notifyq bench``: its subcommands are imported when it is asked for one of them (or
    for its help), never for another command."""

    def _load(self) -> None:
        if self.commands:
            return
        # By module name: the package's attribute `bench` is this group, not the module.
        bench = importlib.import_module("notifyq.cli.bench")
        bench_stress = importlib.import_module("notifyq.cli.bench_stress")
        bench_failover = importlib.import_module("notifyq.cli.bench_failover")
        bench_console = importlib.import_module("notifyq.cli.bench_console")

        _add(
            self,
            bench.latency,
            bench.drain,
            bench.insert,
            bench.backlog,
            bench.rss,
            bench.peers,
            bench.floor,
            bench.all_,
            bench_stress.scale,
            bench_stress.scale_table,
            bench_stress.migrate_history,
            bench_stress.harsh_,
            bench_stress.soak_,
            bench_stress.events,
            bench_failover.failover_,
            bench_stress.fairness_,
            bench_console.console_,
        )

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Bench)
def bench() -> None:
    """Benchmarks on a real PostgreSQL: latency, drain, insert, backlog, rss, floor, peers, all."""


_add(main, bench)
