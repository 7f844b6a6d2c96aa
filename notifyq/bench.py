"""`notifyq bench`: measurements that print numbers (placeholder until written)."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks: pickup latency and drain throughput on a real PostgreSQL."""
