"""The one data-access layer: a typed function for every statement notifyq runs.

Every statement lives in ``queries.sql`` under a name; this package is the only place that
looks them up and passes their parameters, so callers read ``await store.claim(...)`` with
keyword arguments and get typed rows back. ``db.py`` (the driver wrapper), ``migrations.py``
and the ``bench`` package aside, no other module runs SQL or holds asyncpg objects.

The words the SQL and the Python share (:class:`Status`, the ``status`` column's values;
:class:`Verdict`, the ``finish`` statement's outcomes and the history's event names; the
ended and live sets) live in :mod:`notifyq.vocabulary`, which imports no driver; they are
re-exported here for the store's callers.
"""

from __future__ import annotations

from notifyq.store.console import (
    BATCH_MAX as BATCH_MAX,
)
from notifyq.store.console import (
    COUNT_CAP as COUNT_CAP,
)
from notifyq.store.console import (
    Acted as Acted,
)
from notifyq.store.console import (
    BulkStep as BulkStep,
)
from notifyq.store.console import (
    Counted as Counted,
)
from notifyq.store.console import (
    FailureGroup as FailureGroup,
)
from notifyq.store.console import (
    act_in_bulk as act_in_bulk,
)
from notifyq.store.console import (
    act_on_ids as act_on_ids,
)
from notifyq.store.console import (
    count_tasks as count_tasks,
)
from notifyq.store.console import (
    failure_groups as failure_groups,
)
from notifyq.store.console import (
    find_tasks as find_tasks,
)
from notifyq.store.console import (
    one_task_status as one_task_status,
)
from notifyq.store.console import (
    run_schedule as run_schedule,
)
from notifyq.store.console import (
    task_json as task_json,
)
from notifyq.store.engine import (
    Beat as Beat,
)
from notifyq.store.engine import (
    Claimed as Claimed,
)
from notifyq.store.engine import (
    Exchange as Exchange,
)
from notifyq.store.engine import (
    Idle as Idle,
)
from notifyq.store.engine import (
    LimitedClaim as LimitedClaim,
)
from notifyq.store.engine import (
    Outcome as Outcome,
)
from notifyq.store.engine import (
    Registration as Registration,
)
from notifyq.store.engine import (
    claim as claim,
)
from notifyq.store.engine import (
    claim_with_limits as claim_with_limits,
)
from notifyq.store.engine import (
    finish as finish,
)
from notifyq.store.engine import (
    finish_and_claim as finish_and_claim,
)
from notifyq.store.engine import (
    finish_in_transaction as finish_in_transaction,
)
from notifyq.store.engine import (
    go_idle as go_idle,
)
from notifyq.store.engine import (
    heartbeat as heartbeat,
)
from notifyq.store.engine import (
    limited_queues as limited_queues,
)
from notifyq.store.engine import (
    register as register,
)
from notifyq.store.engine import (
    send_probe as send_probe,
)
from notifyq.store.engine import (
    unregister as unregister,
)
from notifyq.store.engine import (
    wake_for_freed_slots as wake_for_freed_slots,
)
from notifyq.store.fleet import (
    SCHEDULES_PAGE_MAX as SCHEDULES_PAGE_MAX,
)
from notifyq.store.fleet import (
    DueSchedule as DueSchedule,
)
from notifyq.store.fleet import (
    Fired as Fired,
)
from notifyq.store.fleet import (
    QueueInfo as QueueInfo,
)
from notifyq.store.fleet import (
    ScheduleClock as ScheduleClock,
)
from notifyq.store.fleet import (
    ScheduleRow as ScheduleRow,
)
from notifyq.store.fleet import (
    clear_queue_limits as clear_queue_limits,
)
from notifyq.store.fleet import (
    due_schedules as due_schedules,
)
from notifyq.store.fleet import (
    fire_schedules as fire_schedules,
)
from notifyq.store.fleet import (
    get_schedule as get_schedule,
)
from notifyq.store.fleet import (
    list_queues as list_queues,
)
from notifyq.store.fleet import (
    list_schedules as list_schedules,
)
from notifyq.store.fleet import (
    pause_schedule as pause_schedule,
)
from notifyq.store.fleet import (
    remove_schedule as remove_schedule,
)
from notifyq.store.fleet import (
    schedule_first_run as schedule_first_run,
)
from notifyq.store.fleet import (
    schedules_clock as schedules_clock,
)
from notifyq.store.fleet import (
    set_queue_limits as set_queue_limits,
)
from notifyq.store.fleet import (
    upsert_schedule as upsert_schedule,
)
from notifyq.store.reads import (
    CHILDREN_SCAN as CHILDREN_SCAN,
)
from notifyq.store.reads import (
    Backlog as Backlog,
)
from notifyq.store.reads import (
    BatchGauges as BatchGauges,
)
from notifyq.store.reads import (
    BatchInfo as BatchInfo,
)
from notifyq.store.reads import (
    BatchProgress as BatchProgress,
)
from notifyq.store.reads import (
    Confirmed as Confirmed,
)
from notifyq.store.reads import (
    Pickup as Pickup,
)
from notifyq.store.reads import (
    Related as Related,
)
from notifyq.store.reads import (
    TaskState as TaskState,
)
from notifyq.store.reads import (
    batch_gauges as batch_gauges,
)
from notifyq.store.reads import (
    batch_members as batch_members,
)
from notifyq.store.reads import (
    batch_progress as batch_progress,
)
from notifyq.store.reads import (
    confirm_events as confirm_events,
)
from notifyq.store.reads import (
    connection_limits as connection_limits,
)
from notifyq.store.reads import (
    counts as counts,
)
from notifyq.store.reads import (
    due_backlog as due_backlog,
)
from notifyq.store.reads import (
    ended_last_minute as ended_last_minute,
)
from notifyq.store.reads import (
    ended_per_minute as ended_per_minute,
)
from notifyq.store.reads import (
    list_tasks as list_tasks,
)
from notifyq.store.reads import (
    live_batches as live_batches,
)
from notifyq.store.reads import (
    live_processes as live_processes,
)
from notifyq.store.reads import (
    pickup_sample as pickup_sample,
)
from notifyq.store.reads import (
    ping as ping,
)
from notifyq.store.reads import (
    recent_failures as recent_failures,
)
from notifyq.store.reads import (
    replica_lag_s as replica_lag_s,
)
from notifyq.store.reads import (
    running_tasks as running_tasks,
)
from notifyq.store.reads import (
    task_batch as task_batch,
)
from notifyq.store.reads import (
    task_children as task_children,
)
from notifyq.store.reads import (
    task_parents as task_parents,
)
from notifyq.store.reads import (
    task_parents_brief as task_parents_brief,
)
from notifyq.store.reads import (
    unserved as unserved,
)
from notifyq.store.reads import (
    workers as workers,
)
from notifyq.store.roles import (
    grant as grant,
)
from notifyq.store.rows import (
    MAX_ERROR_CHARS as MAX_ERROR_CHARS,
)
from notifyq.store.rows import (
    PREVIEW_CHARS as PREVIEW_CHARS,
)
from notifyq.store.rows import (
    TASK_COLUMNS as TASK_COLUMNS,
)
from notifyq.store.rows import (
    EventRow as EventRow,
)
from notifyq.store.rows import (
    Row as Row,
)
from notifyq.store.rows import (
    TaskRow as TaskRow,
)
from notifyq.store.rows import (
    clean_text as clean_text,
)
from notifyq.store.tasks import (
    UNIQUE_ATTEMPTS as UNIQUE_ATTEMPTS,
)
from notifyq.store.tasks import (
    Enqueued as Enqueued,
)
from notifyq.store.tasks import (
    cancel as cancel,
)
from notifyq.store.tasks import (
    due_or_running as due_or_running,
)
from notifyq.store.tasks import (
    enqueue as enqueue,
)
from notifyq.store.tasks import (
    get_task as get_task,
)
from notifyq.store.tasks import (
    retry as retry,
)
from notifyq.store.tasks import (
    seed as seed,
)
from notifyq.store.tasks import (
    task_history as task_history,
)
from notifyq.store.upkeep import (
    HistoryDrop as HistoryDrop,
)
from notifyq.store.upkeep import (
    Partitions as Partitions,
)
from notifyq.store.upkeep import (
    Recovered as Recovered,
)
from notifyq.store.upkeep import (
    delete_ended_before as delete_ended_before,
)
from notifyq.store.upkeep import (
    drop_history_days as drop_history_days,
)
from notifyq.store.upkeep import (
    expire_tasks as expire_tasks,
)
from notifyq.store.upkeep import (
    maintain_partitions as maintain_partitions,
)
from notifyq.store.upkeep import (
    reap as reap,
)
from notifyq.store.upkeep import (
    take_turn as take_turn,
)
from notifyq.vocabulary import (
    ENDED as ENDED,
)
from notifyq.vocabulary import (
    LIVE as LIVE,
)
from notifyq.vocabulary import (
    Status as Status,
)
from notifyq.vocabulary import (
    Verdict as Verdict,
)
