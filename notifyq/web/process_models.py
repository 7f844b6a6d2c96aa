"""The HTTP side's answers about the processes: /workers, /stats and /health."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    in_flight: int
    version: str
    started_at: datetime
    last_seen: datetime
    state: Literal["alive", "gone"] = Field(
        description="gone: no heartbeat for longer than LEASE (the process ended without "
        "leaving, e.g. killed); its row stays until the reaper forgets it"
    )


class Workers(BaseModel):
    workers: list[WorkerOut]


class Latency(BaseModel):
    p50_ms: float | None
    p95_ms: float | None
    samples: int


class MinutePoint(BaseModel):
    minute: int = Field(description="Unix time of the minute's start")
    ended: int
    errors: int
    pickup_p50_ms: float | None


class Reads(BaseModel):
    source: str = Field(
        description="primary, or replica (READ_DATABASE_URL): where lists, stats and the page read",
    )
    lag_s: float | None = Field(
        description="Seconds the replica is behind the primary; null when reads go to the primary"
    )


class Stats(BaseModel):
    mode: str = Field(description="serve (workers and HTTP) or web (HTTP only)")
    role: str = Field(description="the same as mode; kept for clients of earlier versions")
    now: datetime = Field(description="The server's clock, for ages computed by clients")
    uptime_s: float
    counts_by_status: dict[str, int]
    counts_by_queue: dict[str, dict[str, int]]
    since_start: dict[str, int] = Field(
        description="This process's workers: done, failed, retried, cancelled, released, "
        "recovered (by its reaper)"
    )
    ended_since_start: dict[str, int] = Field(
        description="Tasks every process ended in the whole minutes since this one started"
    )
    throughput_per_s: float = Field(
        description="Tasks every process ended per second over the last 60 seconds"
    )
    pickup_latency: Latency
    last_hour: list[MinutePoint]
    reads: Reads


class Check(BaseModel):
    ok: bool
    detail: str


class HealthOut(BaseModel):
    # degraded: serving, with a problem of its own (stuck threads); still 200
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, Check]
