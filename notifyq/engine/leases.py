"""The lease keeper: one batched heartbeat per LEASE/3 for every attempt this process holds.

The same round trip refreshes the process's registry row. An attempt whose lease is gone
(another process recovered the task) is stopped; one whose row says its cancel was asked
(``cancel_requested_at``) is cancelled. A ``notifyq_cancel`` notification only makes the
next beat come at once: the table decides, so a forged notification cancels nothing.
"""

from __future__ import annotations

import random

import trio

from notifyq import db, errors, logs, store
from notifyq.engine.ledger import Ledger
from notifyq.settings import Settings

log = logs.get("notifyq.service")


async def serve_heartbeat(
    database: db.Database, settings: Settings, ledger: Ledger, me: store.Registration
) -> None:
    interval = settings.lease_s / 3
    while True:
        await ledger.recheck.wait_until(trio.current_time() + interval * random.uniform(0.9, 1.0))
        held = ledger.running()
        sent = trio.current_time()
        try:
            kept = await store.heartbeat(database, me, attempts=held, lease_s=settings.lease_s)
        except errors.DatabaseUnavailable as exc:
            log.warning("heartbeat.failed", error=str(exc), tasks=len(held))
            continue
        for key in held:
            attempt = ledger.attempts.get(key)
            if attempt is None:
                continue
            task_id = attempt.task.id
            if key in kept:
                if kept[key].extended:  # else the row was busy: the old deadline holds
                    attempt.lease_until = sent + settings.lease_s
                if kept[key].cancel_requested and attempt.stop_reason is None:
                    log.info("task.cancel_requested", task_id=task_id)
                    attempt.request_stop("cancel")
            else:
                # Another attempt may hold the task now (the reaper, a retry, a claim): the
                # fence (claim token) tells this one apart from it.
                log.warning("task.lease_lost", task_id=task_id, attempt=attempt.task.attempt)
                attempt.request_stop("lease_lost")
