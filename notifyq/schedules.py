"""Periodic schedules, the pure part: when a schedule ticks, and what a due one fires.

No I/O here. The engine reads ``notifyq.schedules``, asks :func:`plan` what to fire, and
fires it with ``notifyq.fire_schedule`` (a compare-and-set on ``next_run_at``; migration
0005), so that each tick is enqueued once however many processes race for it.

Rules (the README repeats them):

- ``cron``: five fields (minute to day of week) or six (seconds first), or ``@hourly``,
  ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``; parsed by cronsim, which follows
  Debian cron. Ticks are read on the wall clock of ``tz`` (default UTC).
- Clock changes (DST) in ``tz``, for a five-field expression with a fixed minute and hour
  (``30 2 * * *``): a tick that falls in a gap (the clock jumps from 02:00 to 03:00) fires at
  the first instant after the gap (03:00); a tick in an overlap (02:00-03:00 twice) fires
  once, on the first pass. Expressions with a wildcard minute or hour (``*/15 * * * *``),
  and six-field ones, follow the real clock: no tick in the gap, both passes of the overlap.
- ``every``: a whole number of seconds, at least 1; ticks are the multiples of the
  interval counted from 1970-01-01T00:00Z (``every 1h`` ticks on the hour), so every
  process computes the same ticks; time zones and clock changes do not apply.
- Catch-up after downtime (ticks that came due while no process ran): ``coalesce`` (the
  default) fires once, as the latest due tick, and counts the others as missed; ``all``
  fires every missed tick, at most ``catch_up_limit`` of them (the latest ones; older ones
  count as missed).
"""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import cronsim

from notifyq import durations, errors, spec

CatchUp = Literal["coalesce", "all"]
CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)
CATCH_UP_LIMIT_MAX = 10_000
# The bounds of the table's checks (migrations 0005 and 0012).
TZ_MAX_CHARS = 128
CRON_MAX_CHARS = 256
EVERY_MAX_S = durations.MAX_DURATION_DAYS * 86_400
# Missed ticks are counted one by one for cron schedules; past this many the count stops.
COUNT_LIMIT = 10_000

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(errors.NotifyqError):
    """A schedule's definition is bad; the one-line message says what and why."""


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``; :class:`ScheduleError` if there is none such."""
    if isinstance(name, str) and len(name) > TZ_MAX_CHARS:
        raise ScheduleError(
            f"unknown time zone of {len(name)} characters: an IANA name has at most {TZ_MAX_CHARS}"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    # A folder of the zone database ('Europe') is an OSError (IsADirectoryError), not a
    # ZoneInfoNotFoundError.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ScheduleError(
            f"unknown time zone {name!r}: expected an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


def every_seconds(value: object) -> int:
    """``every`` as whole seconds: ``"90s"``, ``"5m"``, ``3600``, a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = durations.parse_duration(value)
        except durations.DurationTooLong as exc:
            raise ScheduleError(f"invalid interval {value!r}: {exc}") from None
        except ValueError:
            raise ScheduleError(
                f"invalid interval {value!r}: expected {durations.DURATION_HELP}"
            ) from None
    if seconds < 1 or seconds != int(seconds):
        raise ScheduleError(
            f"invalid interval {value!r}: an interval is a whole number of seconds, at least 1s"
        )
    if seconds > EVERY_MAX_S:
        raise ScheduleError(f"invalid interval {value!r}: at most {durations.MAX_DURATION_DAYS}d")
    return int(seconds)


@dataclass(frozen=True)
class Timing:
    """When a schedule ticks: a cron expression in a time zone, or an interval."""

    cron: str | None = None
    every_s: int | None = None
    tz: str = "UTC"
    _zone: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise ScheduleError("a schedule needs exactly one of cron and every")
        object.__setattr__(self, "_zone", zone(self.tz))
        if self.every_s is not None and (self.every_s < 1 or isinstance(self.every_s, bool)):
            raise ScheduleError(f"invalid interval {self.every_s!r}: at least 1s")
        if self.every_s is not None and self.every_s > EVERY_MAX_S:
            raise ScheduleError(
                f"invalid interval {self.every_s!r}s: at most {durations.MAX_DURATION_DAYS}d"
            )
        if self.cron is not None:
            if len(self.cron) > CRON_MAX_CHARS:
                # Not echoed: such a value is long (a number of 4,300 digits, say).
                raise ScheduleError(
                    f"invalid cron expression of {len(self.cron)} characters: "
                    f"at most {CRON_MAX_CHARS}"
                )
            try:
                cronsim.CronSim(self._expression, datetime.now(UTC))
            except (cronsim.CronSimError, ValueError) as exc:
                raise ScheduleError(
                    f"invalid cron expression {self.cron!r}: {str(exc).lower()} field"
                    if str(exc).startswith("Bad ")
                    else f"invalid cron expression {self.cron!r}: {str(exc).lower()}"
                ) from None
            # An expression that parses may still never match (30 February).
            try:
                next(cronsim.CronSim(self._expression, datetime.now(UTC)))
            except StopIteration:
                raise ScheduleError(
                    f"invalid cron expression {self.cron!r}: it never fires"
                ) from None

    @property
    def _expression(self) -> str:
        assert self.cron is not None
        text = " ".join(self.cron.split())
        return ALIASES.get(text.lower(), text)

    @property
    def _step(self) -> timedelta:
        assert self.every_s is not None
        return timedelta(seconds=self.every_s)

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} in {self.tz}"
        return f"every {self.every_s}s"

    def next_after(self, instant: datetime) -> datetime:
        """The first tick strictly after ``instant`` (aware), in UTC."""
        if self.every_s is not None:
            return EPOCH + ((instant - EPOCH) // self._step + 1) * self._step
        ticks = cronsim.CronSim(self._expression, instant.astimezone(self._zone))
        while True:
            # Debian cron's wall-clock rule may give a tick at or before `instant` on the
            # second pass of an overlap (it was the first pass's): that one fired already.
            try:
                tick = next(ticks).astimezone(UTC)
            except StopIteration:
                raise ScheduleError(f"cron expression {self.cron!r} never fires again") from None
            if tick > instant:
                return tick

    def ticks_back(self, instant: datetime, *, not_before: datetime, count: int) -> list[datetime]:
        """Up to ``count`` ticks at or before ``instant`` and not before ``not_before``,
        latest first, in UTC."""
        found: list[datetime] = []
        if self.every_s is not None:
            tick = EPOCH + ((instant - EPOCH) // self._step) * self._step
            while len(found) < count and tick >= not_before:
                found.append(tick)
                tick -= self._step
            return found
        # cronsim steps back strictly before its start, at whole seconds.
        start = instant.astimezone(self._zone).replace(microsecond=0) + timedelta(seconds=1)
        ticks = cronsim.CronSim(self._expression, start, reverse=True)
        while len(found) < count:
            try:
                tick = next(ticks).astimezone(UTC)
            except StopIteration:
                break
            if tick < not_before:
                break
            if tick <= instant and (not found or tick < found[-1]):
                found.append(tick)
        return found

    def count_between(self, first: datetime, last: datetime) -> int:
        """How many ticks lie in [first, last] where ``first`` is a tick (at most
        COUNT_LIMIT for cron)."""
        if last < first:
            return 0
        if self.every_s is not None:
            return (last - first) // self._step + 1
        n, tick = 1, first
        while n < COUNT_LIMIT:
            tick = self.next_after(tick)
            if tick > last:
                break
            n += 1
        return n


@dataclass(frozen=True)
class Firing:
    """What a process fires for a due schedule: the ticks to enqueue (oldest first; one
    unless catch-up ``all`` found several), the ``next_run_at`` written back, and how many
    due ticks this firing skips."""

    ticks: tuple[datetime, ...]
    next_run_at: datetime
    missed: int

    @property
    def tick(self) -> datetime:
        """The latest tick fired (the schedule's ``last_run_at`` afterwards)."""
        return self.ticks[-1]


def plan(
    timing: Timing,
    due: datetime,
    now: datetime,
    *,
    catch_up: CatchUp = "coalesce",
    catch_up_limit: int = 100,
) -> Firing | None:
    """What to fire for a schedule whose stored next tick is ``due``; None if not yet due.

    ``due`` is a tick (computed by :meth:`Timing.next_after`). More than one due tick means
    the fleet was down (or the schedule paused): ``catch_up`` decides. One pass, linear in
    the ticks it returns (and in the missed ones it counts, up to COUNT_LIMIT for cron).
    """
    if due > now:
        return None
    count = 1 if catch_up == "coalesce" else catch_up_limit
    recent = timing.ticks_back(now, not_before=due, count=count)
    if not recent:
        return Firing((due,), timing.next_after(max(due, now)), 0)
    oldest, latest = recent[-1], recent[0]
    missed = timing.count_between(due, oldest) - 1
    return Firing(tuple(reversed(recent)), timing.next_after(max(latest, now)), missed)


def first_run(timing: Timing, now: datetime) -> datetime:
    """``next_run_at`` of a new schedule (or one whose timing changed): its first tick
    after now."""
    return timing.next_after(now)


@dataclass(frozen=True)
class Schedule:
    """A schedule's definition, checked: what ``notifyq.schedules`` holds, less its state."""

    name: str
    timing: Timing
    kind: str
    payload: Any = None
    queue: str = "default"
    priority: int = 0
    catch_up: CatchUp = "coalesce"
    catch_up_limit: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 128:
            raise ScheduleError(f"invalid schedule name {self.name!r}: 1 to 128 characters")
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ScheduleError(
                f"invalid catch-up policy {self.catch_up!r}: expected "
                + " or ".join(CATCH_UP_POLICIES)
            )
        if (
            isinstance(self.catch_up_limit, bool)
            or not isinstance(self.catch_up_limit, int)
            or not 1 <= self.catch_up_limit <= CATCH_UP_LIMIT_MAX
        ):
            raise ScheduleError(
                f"invalid catch-up limit {self.catch_up_limit!r}: 1 to {CATCH_UP_LIMIT_MAX}"
            )
        try:
            json.dumps(self.payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ScheduleError(
                f"invalid payload for schedule {self.name!r}: not JSON ({exc})"
            ) from None
        try:
            # The tasks it creates pass the check of every entry point (notifyq.spec): its
            # kind, queue, priority and payload are theirs.
            spec.storable("schedule name", self.name)
            spec.new_task(self.kind, self.payload, queue=self.queue, priority=self.priority)
        except errors.InvalidTask as exc:
            raise ScheduleError(f"schedule {self.name!r}: {exc}") from None


def define(
    name: str,
    *,
    cron: str | None = None,
    every: object = None,
    kind: str,
    payload: Any = None,
    queue: str = "default",
    priority: int | str = 0,
    tz: str = "UTC",
    catch_up: str = "coalesce",
    catch_up_limit: int = 100,
) -> Schedule:
    """A checked :class:`Schedule` from user input (App declarations, CLI, HTTP)."""
    if (cron is None) == (every is None):
        raise ScheduleError(f"schedule {name!r} needs exactly one of cron and every")
    if cron is not None and not isinstance(cron, str):
        raise ScheduleError(f"invalid cron expression {cron!r}: expected text")
    timing = Timing(cron=cron, every_s=None if every is None else every_seconds(every), tz=tz)
    try:
        number = spec.priority_number(priority)  # a name (high), as its number
    except errors.InvalidTask as exc:
        raise ScheduleError(f"schedule {name!r}: {exc}") from None
    # Schedule checks catch_up against CATCH_UP_POLICIES.
    return Schedule(
        name, timing, kind, payload, queue, number, cast(CatchUp, catch_up), catch_up_limit
    )
