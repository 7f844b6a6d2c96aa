"""Every error notifyq raises derives from :class:`NotifyqError`.

Handlers raise :class:`Retry`, :class:`Fail` or :class:`PayloadError` to steer what happens
to the task; any other exception counts as a failed attempt.
"""

from __future__ import annotations

from datetime import timedelta


class NotifyqError(Exception):
    """Base of all notifyq errors."""


class ConfigError(NotifyqError):
    """A setting has a bad value; the message names the setting."""


class DatabaseUnavailable(NotifyqError):
    """The database could not be reached, or the connection died mid-statement."""


class ServerReadOnly(DatabaseUnavailable):
    """The server refused a write because it is read-only now: a standby, or a primary
    demoted by a failover (SQLSTATE 25006). Nothing of the statement was written; the
    connections to that server are dropped, and the next one goes to whichever server of
    the URL is writable (``target_session_attrs=read-write``)."""


class DatabaseRefused(NotifyqError):
    """The server answered and refused the connection: no such database or role, a wrong
    password, no permission to connect. Unlike :class:`DatabaseUnavailable`, trying again
    does not help: the URL is wrong."""


class StatementAborted(DatabaseUnavailable):
    """PostgreSQL aborted the statement for a reason that passes (a deadlock between two
    statements): nothing of it was written, so it is safe to try again. Handled wherever
    :class:`DatabaseUnavailable` is (logged, retried)."""


class QueryError(NotifyqError):
    """PostgreSQL refused a statement (a constraint, bad data); ``sqlstate`` says why."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class TransactionOver(NotifyqError):
    """A statement on a transactional handler's ``task.transaction`` after the transaction
    was committed or rolled back (from a thread that was abandoned, say)."""


class SchemaError(NotifyqError):
    """The database schema is missing or older than this notifyq needs."""


class TaskNotFound(NotifyqError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} does not exist")
        self.task_id = task_id


class InvalidTransition(NotifyqError):
    """The task is not in a state that allows the requested change."""

    def __init__(self, task_id: int, status: str, action: str) -> None:
        super().__init__(f"cannot {action} task {task_id}: it is {status}")
        self.task_id = task_id
        self.status = status
        self.action = action


# --- raised by handlers ------------------------------------------------------------


class HandlerSignal(NotifyqError):
    """Base of the exceptions a handler raises on purpose."""


class Retry(HandlerSignal):
    """Fail this attempt and retry after ``delay_s`` seconds (if attempts remain)."""

    def __init__(self, message: str = "retry requested", *, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        super().__init__(message)
        self.delay_s = delay_s


MAX_SNOOZE_S = 10 * 365 * 86400.0  # the longest delay of a task (spec.MAX_DELAY_S)


class Snooze(HandlerSignal):
    """Put the task back to pending for ``delay`` (seconds or a timedelta) without spending
    an attempt; raise it or return it from a handler. A task snoozes at most its
    ``max_snoozes`` times (100 unless set on the row); once more ends it ``error``."""

    def __init__(self, delay: float | timedelta) -> None:
        number = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not 0 <= number <= MAX_SNOOZE_S  # NaN fails too
        ):
            raise ValueError(
                f"invalid snooze delay {delay!r}: expected seconds or a timedelta, "
                f"0 or more, at most {MAX_SNOOZE_S:.0f}"
            )
        self.delay_s = float(number)
        super().__init__(f"snoozed for {self.delay_s:g} s")


class Fail(HandlerSignal):
    """Fail the task at once, without retrying."""


class PayloadError(Fail):
    """The payload is not what the handler expects; retrying would not help."""


class WorkflowError(Fail):
    """A handler asked its workflow for what is not there (``task.parent_result()`` of a
    task without exactly one parent, or of a parent that failed; ``task.batch()`` of a task
    that is no batch's callback). Raised out of a handler, it fails the task without a
    retry: another attempt would read the same."""


# --- raised to producers -----------------------------------------------------------


class InvalidTask(NotifyqError, ValueError):
    """A task option has a bad value; raised before anything reaches the database."""

    def __init__(self, option: str, value: object, expected: str) -> None:
        try:
            shown = repr(value)
        except (ValueError, RecursionError):  # an int over str()'s limit, deep nesting
            shown = f"<{type(value).__name__} too large to show>"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid {option} {shown}: {expected}")
        self.option = option
        self.value = value


class InvalidWorkflow(NotifyqError, ValueError):
    """A chain, group or chord of a shape notifyq does not add; raised before any SQL."""


class WaitTimeout(NotifyqError, TimeoutError):
    """The task did not end within the time given to :func:`notifyq.wait`."""

    def __init__(self, task_id: int, timeout_s: float) -> None:
        super().__init__(f"task {task_id} did not end within {timeout_s:g} s")
        self.task_id = task_id
        self.timeout_s = timeout_s
