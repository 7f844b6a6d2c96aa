"""How many database connections `--processes N` needs, against what the server allows.

Each process holds its pool (POOL_SIZE) and one LISTEN connection (none with NO_LISTEN);
the process that serves HTTP holds the HTTP side's pool too (HTTP_POOL_SIZE). A fleet that
needs more than the server has never becomes ready, and takes the slots that producers and
psql need. So before any child starts, the supervisor compares the two: the configured
POOL_SIZE when it fits, else the largest pool that fits (at least ``MIN_POOL_SIZE``), else a
one-line refusal (exit status 2).

What the server allows: ``max_connections``, less the slots reserved for superusers
(``superuser_reserved_connections``, and ``reserved_connections`` from PostgreSQL 16), less
``PRODUCER_MARGIN`` left for producers, psql and the CLI. Connections that other clients hold
already are not subtracted: this is a check of the configuration, not a reservation.
"""

from __future__ import annotations

from dataclasses import dataclass

from notifyq import errors
from notifyq.settings import Settings

PRODUCER_MARGIN = 10
MIN_POOL_SIZE = 2  # the least POOL_SIZE accepts
# Pool connections a process's engine keeps for itself: with POOL_SIZE 4 or more the claimer
# and the writer hold one each, and the lease keeper and the maintenance turns (reaper,
# scheduler) need one each at any moment; below that, one per statement, two at once.
ENGINE_CONNECTIONS = 4
SMALL_POOL_ENGINE_CONNECTIONS = 2


def transactional_slots(settings: Settings) -> int:
    """How many transactional handlers one process runs at once: each holds a connection of
    the pool (POOL_SIZE) from its start until its outcome commits, and the engine's own
    connections must stay free, or the heartbeat would wait behind handlers and leases run
    out. Never more than WORKER_COUNT, at least 1 (README "Transactional handlers": size
    POOL_SIZE at WORKER_COUNT + ENGINE_CONNECTIONS to run every worker transactionally)."""
    pool = settings.pool_size
    engine = ENGINE_CONNECTIONS if pool >= ENGINE_CONNECTIONS else SMALL_POOL_ENGINE_CONNECTIONS
    return max(1, min(settings.worker_count, pool - engine))


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    reserved: int

    @property
    def available(self) -> int:
        return max(0, self.max_connections - self.reserved - PRODUCER_MARGIN)


def fit_pool_size(settings: Settings, *, processes: int, http: bool, limits: ServerLimits) -> int:
    """The POOL_SIZE each of ``processes`` runs with (see the module's docstring); raises
    :class:`errors.ConfigError` when not even ``MIN_POOL_SIZE`` fits."""
    listen = 0 if settings.no_listen else 1
    http_pool = settings.http_pool_size if http else 0

    def needed(pool_size: int) -> int:
        return processes * (pool_size + listen) + http_pool

    if needed(settings.pool_size) <= limits.available:
        return settings.pool_size
    fitting = (limits.available - http_pool) // processes - listen
    if fitting >= MIN_POOL_SIZE:
        return fitting
    raise errors.ConfigError(
        f"--processes {processes} needs at least {needed(MIN_POOL_SIZE)} database connections "
        f"({processes} x (POOL_SIZE {MIN_POOL_SIZE} + {listen} LISTEN) + {http_pool} HTTP) "
        f"but the server allows {limits.available} (max_connections {limits.max_connections} "
        f"- {limits.reserved} reserved - {PRODUCER_MARGIN} kept for other clients); "
        "lower PROCESSES or raise max_connections"
    )
