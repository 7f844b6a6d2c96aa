"""Schedules' pure rules: cron and intervals, time zones across DST changes, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from notifyq.app import App
from notifyq.cli import main
from notifyq.schedules import (
    Firing,
    ScheduleError,
    Timing,
    define,
    every_seconds,
    plan,
)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def ticks(timing: Timing, start: datetime, n: int) -> list[datetime]:
    found = []
    for _ in range(n):
        start = timing.next_after(start)
        found.append(start)
    return found


# Europe/Berlin, 2026: the clocks go 02:00 -> 03:00 on 29 March (01:00 UTC), and
# 03:00 -> 02:00 on 25 October (01:00 UTC).
BERLIN = "Europe/Berlin"


def test_daily_cron_keeps_its_wall_clock_time_across_both_changes() -> None:
    nine = Timing(cron="0 9 * * *", tz=BERLIN)
    assert ticks(nine, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 8),
        utc(2026, 3, 29, 7),
        utc(2026, 3, 30, 7),
    ]
    assert ticks(nine, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 8), utc(2026, 10, 26, 8)]


def test_a_tick_in_the_spring_gap_fires_at_the_first_instant_after_it() -> None:
    half_past_two = Timing(cron="30 2 * * *", tz=BERLIN)
    # 02:30 does not exist on 29 March: it fires at 03:00 CEST, then 02:30 again.
    assert ticks(half_past_two, utc(2026, 3, 28, 12), 3) == [
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]


def test_a_tick_in_the_autumn_overlap_fires_once() -> None:
    half_past_two = Timing(cron="30 2 * * *", tz=BERLIN)
    # 02:30 happens twice on 25 October (00:30 and 01:30 UTC): it fires on the first pass.
    assert ticks(half_past_two, utc(2026, 10, 24, 12), 3) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]
    # Asked during the second pass (01:15 CET = 00:15 UTC... after the first 02:30), the
    # next tick is the next day's, not the first pass's again.
    assert half_past_two.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_wildcard_hours_follow_the_real_clock_through_gap_and_overlap() -> None:
    half_hourly = Timing(cron="*/30 * * * *", tz=BERLIN)
    # Spring: 02:00 and 02:30 local do not exist; the ticks stay 30 real minutes apart.
    assert ticks(half_hourly, utc(2026, 3, 29, 0, 15), 3) == [
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 1, 30),
    ]
    # Autumn: 02:00 and 02:30 local come twice and so fire twice, 30 real minutes apart.
    assert ticks(half_hourly, utc(2026, 10, 24, 23, 45), 4) == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
    ]


def test_cron_with_seconds_and_aliases() -> None:
    assert ticks(Timing(cron="*/20 * * * * *"), utc(2026, 1, 1, 0, 0, 5), 3) == [
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 40),
        utc(2026, 1, 1, 0, 1, 0),
    ]
    assert Timing(cron="@daily", tz="America/New_York").next_after(utc(2026, 7, 1)) == utc(
        2026, 7, 1, 4
    )
    assert Timing(cron="@hourly").next_after(utc(2026, 7, 1, 5, 59, 59)) == utc(2026, 7, 1, 6)


def test_next_tick_is_strictly_after_the_instant() -> None:
    minutely = Timing(cron="* * * * *")
    assert minutely.next_after(utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 2)
    assert minutely.next_after(utc(2026, 1, 1, 0, 1) - timedelta(microseconds=1)) == utc(
        2026, 1, 1, 0, 1
    )


def test_intervals_tick_on_multiples_counted_from_the_epoch() -> None:
    hourly = Timing(every_s=3600, tz=BERLIN)  # the zone does not matter for intervals
    assert hourly.next_after(utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 29, 1)
    assert hourly.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 2)
    assert ticks(Timing(every_s=7), utc(1970, 1, 1), 2) == [
        utc(1970, 1, 1, 0, 0, 7),
        utc(1970, 1, 1, 0, 0, 14),
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("5m", 300), (3600, 3600), ("1", 1), (timedelta(hours=1), 3600)],
)
def test_every_accepts_whole_seconds(value: object, seconds: int) -> None:
    assert every_seconds(value) == seconds


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *': bad minute field"),
        ({"cron": "* * *"}, "invalid cron expression '* * *': wrong number of fields"),
        ({"cron": "0 0 31 4 *"}, "invalid cron expression '0 0 31 4 *': bad day-of-month field"),
        (
            {"cron": "* * * * *", "tz": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus': expected an IANA name such as 'UTC' or 'Europe/Berlin'",
        ),
        (
            {"cron": "* * * * *", "tz": "../etc/passwd"},
            "unknown time zone '../etc/passwd': expected an IANA name such as 'UTC' or 'Europe/Berlin'",
        ),
        (
            {"cron": "* * * * *", "tz": "Europe"},
            "unknown time zone 'Europe': expected an IANA name such as 'UTC' or 'Europe/Berlin'",
        ),
        (
            {"cron": "* * * * *", "tz": "America/Argentina"},
            "unknown time zone 'America/Argentina': expected an IANA name such as 'UTC' or "
            "'Europe/Berlin'",
        ),
        (
            {"cron": "* * * * *", "tz": "x" * 300},
            "unknown time zone of 300 characters: an IANA name has at most 128",
        ),
        (
            {"cron": "1" * 4300 + " * * * *"},
            "invalid cron expression of 4308 characters: at most 256",
        ),
        (
            {"cron": "1" * 200 + " * * * *"},
            f"invalid cron expression '{'1' * 200} * * * *': bad minute field",
        ),
        ({"every": "3000000d"}, "invalid interval '3000000d': at most 36500d"),
        (
            {"every": "1.5s"},
            "invalid interval '1.5s': an interval is a whole number of seconds, at least 1s",
        ),
        (
            {"every": "500ms"},
            "invalid interval '500ms': an interval is a whole number of seconds, at least 1s",
        ),
        (
            {"every": "soon"},
            "invalid interval 'soon': expected a duration: seconds, or a number "
            "with ms, s, m, h or d (e.g. 30, 2.5s, 7d)",
        ),
        ({}, "schedule 'tick' needs exactly one of cron and every"),
        (
            {"cron": "* * * * *", "every": "1s"},
            "schedule 'tick' needs exactly one of cron and every",
        ),
        (
            {"every": "1s", "catch_up": "some"},
            "invalid catch-up policy 'some': expected coalesce or all",
        ),
        ({"every": "1s", "catch_up_limit": 0}, "invalid catch-up limit 0: 1 to 10000"),
        (
            {"every": "1s", "payload": float("nan")},
            "invalid payload for schedule 'tick': not JSON (Out of range float values are not JSON "
            "compliant)",
        ),
    ],
)
def test_bad_definitions_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        define("tick", kind="noop", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_not_due_yet_fires_nothing() -> None:
    assert plan(Timing(every_s=10), utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 9)) is None


def test_on_time_fires_the_tick_and_moves_to_the_next() -> None:
    every10 = Timing(every_s=10)
    assert plan(every10, utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 10, 300_000)) == Firing(
        (utc(2026, 1, 1, 0, 0, 10),), utc(2026, 1, 1, 0, 0, 20), missed=0
    )


def test_coalesce_fires_once_as_the_latest_due_tick() -> None:
    every10 = Timing(every_s=10)
    # Down from 00:00:00 to 00:00:35: ticks 0, 10, 20, 30 came due.
    assert plan(every10, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 35)) == Firing(
        (utc(2026, 1, 1, 0, 0, 30),), utc(2026, 1, 1, 0, 0, 40), missed=3
    )
    daily = Timing(cron="30 2 * * *", tz=BERLIN)
    assert plan(daily, utc(2026, 3, 27, 1, 30), utc(2026, 3, 30, 12)) == Firing(
        (utc(2026, 3, 30, 0, 30),), utc(2026, 3, 31, 0, 30), missed=3
    )


def test_all_fires_every_missed_tick_up_to_the_limit_in_one_firing() -> None:
    every10 = Timing(every_s=10)
    due, now = utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 35)
    firing = plan(every10, due, now, catch_up="all", catch_up_limit=100)
    assert firing == Firing(
        tuple(utc(2026, 1, 1, 0, 0, s) for s in (0, 10, 20, 30)), utc(2026, 1, 1, 0, 0, 40), 0
    )
    # Bounded: only the latest two, the two before count as missed.
    latest = plan(every10, utc(2026, 1, 1), now, catch_up="all", catch_up_limit=2)
    assert latest == Firing(
        (utc(2026, 1, 1, 0, 0, 20), utc(2026, 1, 1, 0, 0, 30)), utc(2026, 1, 1, 0, 0, 40), 2
    )
    daily = Timing(cron="30 2 * * *", tz=BERLIN)
    assert plan(daily, utc(2026, 3, 27, 1, 30), utc(2026, 3, 30, 12), catch_up="all") == Firing(
        (
            utc(2026, 3, 27, 1, 30),
            utc(2026, 3, 28, 1, 30),
            utc(2026, 3, 29, 1),
            utc(2026, 3, 30, 0, 30),
        ),
        utc(2026, 3, 31, 0, 30),
        0,
    )


def test_a_long_catch_up_of_every_tick_is_planned_in_one_pass() -> None:
    # Three hours of a per-second schedule: the latest catch_up_limit ticks, oldest first.
    for timing in (Timing(every_s=1), Timing(cron="* * * * * *")):
        firing = plan(
            timing, utc(2026, 1, 1), utc(2026, 1, 1, 3), catch_up="all", catch_up_limit=10_000
        )
        assert firing is not None
        assert len(firing.ticks) == 10_000
        assert firing.ticks[0] == utc(2026, 1, 1, 3) - timedelta(seconds=9_999)
        assert firing.ticks[-1] == firing.tick == utc(2026, 1, 1, 3)
        assert firing.next_run_at == utc(2026, 1, 1, 3, 0, 1)
        assert firing.missed == 3 * 3600 + 1 - 10_000


def test_a_long_outage_of_a_every_second_cron_is_planned_quickly() -> None:
    secondly = Timing(cron="* * * * * *")
    firing = plan(secondly, utc(2026, 1, 1), utc(2026, 1, 2, 0, 0, 0, 500_000))
    assert firing is not None
    assert (firing.tick, firing.next_run_at) == (utc(2026, 1, 2), utc(2026, 1, 2, 0, 0, 1))
    assert firing.missed == 9_999  # counted up to COUNT_LIMIT


def test_an_app_refuses_a_zone_that_names_a_folder_of_the_zone_database() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Europe'"):
        App().schedule("x", cron="0 9 * * *", tz="Europe", kind="noop")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["schedule", "add", "s", "--every", "3000000d", "--kind", "noop"],
            "notifyq: invalid interval '3000000d': at most 36500d",
        ),
        (
            ["schedule", "add", "s", "--cron", "* * * * *", "--tz", "Europe", "--kind", "noop"],
            "notifyq: unknown time zone 'Europe'",
        ),
        (
            ["queue", "set", "x", "--rate", "1/0.0001ms"],
            "invalid rate '1/0.0001ms': the period must be from 1ms to 1000d",
        ),
        (["prune", "--older-than", "99999999999d"], "at most 36500d"),
    ],
)
def test_bad_input_on_the_command_line_is_one_line(args: list[str], message: str) -> None:
    # Refused before any database is opened.
    result = CliRunner().invoke(main, args, env={"DATABASE_URL": "postgresql://nowhere.invalid/x"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
