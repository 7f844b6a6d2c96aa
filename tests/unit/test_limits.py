"""Queue limits as values: rates, bounds, changes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from notifyq import limits
from notifyq.cli import main
from notifyq.limits import KEEP, LimitError, Rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/s", Rate(100, 1.0)),
        ("10/m", Rate(10, 60.0)),
        ("1000/h", Rate(1000, 3600.0)),
        ("5 / 10s", Rate(5, 10.0)),
        ("3/500ms", Rate(3, 0.5)),
        ("1/d", Rate(1, 86400.0)),
    ],
)
def test_rates_are_parsed(text: str, rate: Rate) -> None:
    assert limits.parse_rate(text) == rate


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(100, 1.0), "100/s"),
        (Rate(10, 60.0), "10/m"),
        (Rate(5, 10.0), "5/10s"),
        (Rate(3, 0.5), "3/500ms"),
        (Rate(7, 3600.0), "7/h"),
    ],
)
def test_rates_print_as_they_are_written(rate: Rate, text: str) -> None:
    assert str(rate) == text
    assert limits.parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fast", "invalid rate 'fast': expected COUNT/PERIOD, e.g. 100/s, 10/m, 1000/h or 5/10s"),
        ("10", "expected COUNT/PERIOD"),
        ("0/s", "the count must be from 1 to 1000000"),
        ("5/1001d", "the period must be from 1ms to 1000d"),
        ("5/0s", "the period must be from 1ms to 1000d"),
        # The database keeps whole microseconds: this period would be stored as 0.
        ("1/0.0001ms", "invalid rate '1/0.0001ms': the period must be from 1ms to 1000d"),
        ("-1/s", "expected COUNT/PERIOD"),
    ],
)
def test_bad_rates_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(LimitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        limits.parse_rate(text)


def test_changes_set_only_the_fields_given() -> None:
    c = limits.change("api", concurrency=3, rate="20/s")
    assert c.fields == {"concurrency", "rate"}
    assert (c.concurrency, c.rate, c.per_key_concurrency, c.paused) == (
        3,
        Rate(20, 1.0),
        None,
        None,
    )
    cleared = limits.change("api", concurrency=None, per_key_concurrency=KEEP, paused=False)
    assert cleared.fields == {"concurrency", "paused"} and cleared.concurrency is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "invalid concurrency 0: expected an integer from 1 to 1000000"),
        ({"per_key_concurrency": True}, "invalid per_key_concurrency True"),
        ({"rate": "x"}, "invalid rate 'x'"),
    ],
)
def test_bad_changes_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LimitError, match=message):
        limits.change("api", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LimitError, match="invalid queue name ''"):
        limits.change("")


def test_a_queue_with_no_limit_is_not_limited() -> None:
    assert not limits.QueueLimits("q").limited
    assert limits.QueueLimits("q", paused=True).limited
    assert limits.QueueLimits("q", rate=Rate(1, 1.0)).limited


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "invalid concurrency 0: expected an integer from 1 to 1000000"),
        (["--concurrency", "many"], "invalid --concurrency 'many': expected an integer"),
        (["--per-key", "-1"], "invalid per_key_concurrency -1"),
        (["--rate", "fast"], "invalid rate 'fast': expected COUNT/PERIOD"),
        ([], "nothing to set"),
    ],
)
def test_queue_set_refuses_bad_values_with_one_line(args: list[str], message: str) -> None:
    # Refused before any database is opened.
    result = CliRunner().invoke(
        main, ["queue", "set", "api", *args], env={"DATABASE_URL": "postgresql://nowhere.invalid/x"}
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
