"""The verdict of an attempt (a pure function), backoff, result encoding and error text."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from notifyq import errors, spec
from notifyq.engine.verdict import (
    MAX_TRACEBACK_BYTES,
    Facts,
    Retries,
    backoff_s,
    bounded,
    encode_result,
    format_traceback,
    judge,
)
from notifyq.store import MAX_ERROR_CHARS, Outcome, Verdict, clean_text


@pytest.fixture
def seeded() -> Iterator[None]:
    """A fixed seed for the module-level random, restored afterwards."""
    state = random.getstate()
    random.seed(20240601)
    try:
        yield
    finally:
        random.setstate(state)


# --- backoff ------------------------------------------------------------------------------


def test_backoff_without_jitter_doubles_from_base() -> None:
    assert [backoff_s(n, 1.0, 3600.0, jitter=0) for n in range(1, 8)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        64.0,
    ]
    assert [backoff_s(n, 0.5, 3600.0, jitter=0) for n in range(1, 4)] == [0.5, 1.0, 2.0]


def test_backoff_without_jitter_is_capped_by_max() -> None:
    assert backoff_s(12, 1.0, 3600.0, jitter=0) == 2048.0
    assert backoff_s(13, 1.0, 3600.0, jitter=0) == 3600.0
    assert backoff_s(40, 1.0, 3600.0, jitter=0) == 3600.0
    assert backoff_s(3, 10.0, 25.0, jitter=0) == 25.0


def test_attempt_zero_or_negative_counts_as_the_first() -> None:
    assert backoff_s(0, 3.0, 100.0, jitter=0) == 3.0
    assert backoff_s(-5, 3.0, 100.0, jitter=0) == 3.0


def test_zero_base_or_max_means_no_delay() -> None:
    assert backoff_s(5, 0.0, 3600.0) == 0.0
    assert backoff_s(5, 1.0, 0.0) == 0.0


@pytest.mark.parametrize("attempt", [61, 1000, 10**6, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    delay = backoff_s(attempt, 1.0, 3600.0, jitter=0)
    assert delay == 3600.0
    uncapped = backoff_s(attempt, 1.0, math.inf, jitter=0)
    assert math.isfinite(uncapped)
    assert uncapped == 2.0**60


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_jitter_stays_within_a_quarter(attempt: int) -> None:
    nominal = 2.0 ** (attempt - 1)
    samples = [backoff_s(attempt, 1.0, 3600.0) for _ in range(2000)]
    assert all(0.75 * nominal <= s <= 1.25 * nominal for s in samples)
    # It does jitter, over (most of) the whole band, both ways.
    assert min(samples) < 0.80 * nominal
    assert max(samples) > 1.20 * nominal
    assert len(set(samples)) > 1900


@pytest.mark.usefixtures("seeded")
def test_custom_jitter_band() -> None:
    samples = [backoff_s(4, 2.0, 3600.0, jitter=0.1) for _ in range(1000)]
    assert all(14.4 <= s <= 17.6 for s in samples)


@pytest.mark.usefixtures("seeded")
def test_backoff_grows_on_average() -> None:
    means = [sum(backoff_s(n, 1.0, 3600.0) for _ in range(500)) / 500 for n in range(1, 8)]
    for lower, higher in itertools.pairwise(means):
        assert 1.8 < higher / lower < 2.2


@pytest.mark.usefixtures("seeded")
def test_jittered_backoff_never_exceeds_max() -> None:
    # RETRY_MAX is the longest delay between attempts; jitter must not push past it.
    samples = [backoff_s(attempt, 1.0, 3600.0) for attempt in (13, 20, 10**9) for _ in range(700)]
    assert all(s >= 0.75 * 3600.0 for s in samples)
    assert max(samples) <= 3600.0


# --- encode_result --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -3,
        1.5,
        "olleh",
        "",
        "日本語 ✓",
        [1, "a", None],
        {"a": {"b": [1, 2]}},
        "tab\tnewline\n",
        "\x01\x1f control",
    ],
)
def test_encode_result_round_trips(value: object) -> None:
    encoded = encode_result(value)
    assert isinstance(encoded, str)
    assert json.loads(encoded) == value


def test_encode_result_keeps_unicode_readable() -> None:
    assert encode_result("héllo ✓") == '"héllo ✓"'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_encode_result_refuses_nan_and_infinity(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        encode_result(value)
    # Python 3.13 appends the value (": nan"); the message is otherwise fixed.
    assert re.fullmatch(
        r"result is not JSON-serialisable: "
        r"Out of range float values are not JSON compliant(: \S+)?",
        str(caught.value),
    )


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(object(), "object"), ({1, 2}, "set"), (b"bytes", "bytes"), ({"k": 1j}, "complex")],
)
def test_encode_result_refuses_non_serialisable_objects(value: object, type_name: str) -> None:
    with pytest.raises(ValueError) as caught:
        encode_result(value)
    assert str(caught.value) == (
        f"result is not JSON-serialisable: Object of type {type_name} is not JSON serializable"
    )


@pytest.mark.parametrize("value", ["a\x00b", ["\x00"], {"key\x00": 1}, {"k": {"v": "x\x00"}}])
def test_encode_result_refuses_nul_characters(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        encode_result(value)
    assert str(caught.value) == "result contains a NUL character, which jsonb cannot store"


def test_encode_result_accepts_the_text_backslash_u0000() -> None:
    # Six characters, backslash u 0 0 0 0: no NUL in the value, and jsonb stores it fine
    # (it is encoded as "\\u0000"). Only a real NUL character must be refused.
    value = "C:\\u0000\\file"
    assert "\x00" not in value
    encoded = encode_result(value)
    assert json.loads(encoded) == value


# --- clean_text ------------------------------------------------------------------------------


def test_clean_text_replaces_nul() -> None:
    assert clean_text("a\x00b\x00") == "a\\0b\\0"
    assert "\x00" not in clean_text("\x00" * 10)


def test_clean_text_leaves_ordinary_text_alone() -> None:
    text = "ValueError: bad thing\n  at line 3 ✓"
    assert clean_text(text) == text
    assert clean_text("") == ""


def test_clean_text_keeps_text_of_exactly_the_limit() -> None:
    text = "x" * MAX_ERROR_CHARS
    assert clean_text(text) == text


def test_clean_text_truncates_long_text() -> None:
    text = "".join(str(i % 10) for i in range(MAX_ERROR_CHARS * 3))
    cleaned = clean_text(text)
    assert len(cleaned) <= MAX_ERROR_CHARS
    assert cleaned.endswith("… (truncated)")
    assert text.startswith(cleaned.removesuffix("… (truncated)"))
    assert len(cleaned.removesuffix("… (truncated)")) > MAX_ERROR_CHARS - 20


def test_clean_text_truncates_after_replacing_nul() -> None:
    cleaned = clean_text("\x00" * MAX_ERROR_CHARS)  # grows to twice the limit first
    assert "\x00" not in cleaned
    assert len(cleaned) <= MAX_ERROR_CHARS
    assert cleaned.endswith("… (truncated)")


# --- judge ----------------------------------------------------------------------------------

NO_BACKOFF = Retries(base_s=0.0, max_s=0.0)


def facts(**kw: object) -> Facts:
    return Facts(**{"task_id": 7, "attempt": 1, "max_attempts": 3, **kw})  # type: ignore[arg-type]


def test_a_returned_value_is_done_with_its_json() -> None:
    assert judge(facts(returned=True, value={"a": 1}), NO_BACKOFF) == Outcome(
        7, 1, Verdict.DONE, result_json='{"a": 1}'
    )


def test_a_value_that_cannot_be_stored_fails_the_task() -> None:
    outcome = judge(facts(returned=True, value=float("nan")), NO_BACKOFF)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None and "not JSON-serialisable" in outcome.error


def test_a_value_returned_after_the_time_limit_is_a_timeout() -> None:
    outcome = judge(facts(returned=True, overran=True, stopped="timeout", timeout_s=2), NO_BACKOFF)
    assert outcome == Outcome(7, 1, Verdict.RETRIED, error="timed out after 2 s")


def test_a_value_returned_despite_a_cancel_still_counts() -> None:
    assert judge(facts(returned=True, stopped="cancel"), NO_BACKOFF).verdict is Verdict.DONE


def test_an_exception_is_retried_while_attempts_remain() -> None:
    outcome = judge(facts(raised=ValueError("bad")), Retries(base_s=1.0, max_s=1.0))
    assert outcome.verdict is Verdict.RETRIED
    assert outcome.error == "ValueError: bad"
    assert 0.75 <= outcome.delay_s <= 1.0  # the cap, with up to a quarter of jitter below


def test_an_exception_on_the_last_attempt_fails() -> None:
    outcome = judge(facts(attempt=3, raised=ValueError("bad")), NO_BACKOFF)
    assert replace(outcome, traceback=None) == Outcome(
        7, 3, Verdict.FAILED, error="ValueError: bad"
    )


def test_fail_ends_at_once() -> None:
    outcome = judge(facts(raised=errors.Fail("no")), NO_BACKOFF)
    assert replace(outcome, traceback=None) == Outcome(7, 1, Verdict.FAILED, error="Fail: no")


def test_retry_takes_its_own_delay() -> None:
    outcome = judge(facts(raised=errors.Retry("later", delay_s=42)), Retries(1.0, 5.0))
    assert (outcome.verdict, outcome.delay_s) == (Verdict.RETRIED, 42)


@pytest.mark.parametrize(
    ("reason", "verdict"),
    [
        ("shutdown", Verdict.RELEASED),
        ("lease_lost", Verdict.RELEASED),
        ("cancel", Verdict.CANCELLED),
    ],
)
def test_a_stop_from_outside_decides_by_its_reason(reason: str, verdict: Verdict) -> None:
    # The handler raised (trio.Cancelled is not caught as a failure) or was abandoned.
    assert judge(facts(stopped=reason), NO_BACKOFF).verdict is verdict
    assert judge(facts(stopped=reason, raised=RuntimeError("x")), NO_BACKOFF).verdict is verdict


def test_an_abandoned_handler_past_its_limit_is_a_timeout() -> None:
    outcome = judge(facts(attempt=3, overran=True, timeout_s=1.5), NO_BACKOFF)
    assert outcome == Outcome(7, 3, Verdict.FAILED, error="timed out after 1.5 s")


def test_outcome_is_immutable() -> None:
    outcome = Outcome(1, 1, Verdict.DONE)
    with pytest.raises(AttributeError):
        outcome.verdict = Verdict.FAILED  # type: ignore[misc]


# --- snooze -------------------------------------------------------------------------------


def test_a_snooze_raised_or_returned_is_snoozed_with_its_delay_whatever_the_attempt() -> None:
    retries = Retries(1.0, 60.0)
    for facts in (
        Facts(7, 3, 3, raised=errors.Snooze(2.5)),
        Facts(7, 3, 3, returned=True, value=errors.Snooze(timedelta(seconds=2.5))),
    ):
        assert judge(facts, retries) == Outcome(7, 3, Verdict.SNOOZED, delay_s=2.5)


def test_a_snooze_delay_is_checked_as_a_task_delay() -> None:
    for bad in (-1, math.nan, math.inf, "1", True, 11 * 365 * 86400):
        with pytest.raises(ValueError, match=r"invalid snooze delay .*: expected seconds"):
            errors.Snooze(bad)  # type: ignore[arg-type]
    assert errors.MAX_SNOOZE_S == spec.MAX_DELAY_S


# --- tracebacks of failed attempts (task_events.traceback, migration 0019) ---------------


def _raised_deep(depth: int) -> BaseException:
    # Two functions in turn: Python folds a run of one repeated frame, not this.
    def down(n: int) -> None:
        if n == 0:
            raise KeyError("the bottom")
        over(n - 1)

    def over(n: int) -> None:
        down(n)

    try:
        down(depth)
    except KeyError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_failure_carries_its_traceback_and_a_success_none() -> None:
    exc = _raised_deep(2)
    outcome = judge(facts(raised=exc), NO_BACKOFF)
    assert outcome.traceback is not None
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "in down" in outcome.traceback
    assert outcome.traceback.endswith("KeyError: 'the bottom'\n")
    assert judge(facts(returned=True, value=1), NO_BACKOFF).traceback is None
    # Stopped from outside: no exception of the handler's own, no traceback.
    assert judge(facts(stopped="timeout", timeout_s=2.0), NO_BACKOFF).traceback is None
    assert judge(facts(raised=errors.Fail("no")), NO_BACKOFF).traceback is not None
    assert judge(facts(raised=errors.Retry("later", delay_s=1)), NO_BACKOFF).traceback is not None


def test_a_huge_traceback_keeps_its_head_and_tail_and_marks_the_cut() -> None:
    text = format_traceback(_raised_deep(300))
    assert len(text.encode()) <= MAX_TRACEBACK_BYTES
    head, cut, tail = re.split(r"\.\.\. (\d+) bytes of traceback cut \.\.\.\n", text)
    assert head.startswith("Traceback (most recent call last):\n") and head.endswith("\n")
    assert tail.endswith("KeyError: 'the bottom'\n")
    full = "".join(__import__("traceback").format_exception(_raised_deep(300)))
    assert int(cut) == len(full.encode()) - len(head.encode()) - len(tail.encode())


def test_bounded_text_is_storable_and_within_its_bytes() -> None:
    assert bounded("short\n", 100) == "short\n"
    assert bounded("a\x00b", 100) == "a\\0b"
    assert bounded("bad \udc80 surrogate", 100) == "bad \\udc80 surrogate"
    wide = "é" * 10_000 + "\n" + "ü" * 10_000  # two bytes each: a cut may fall mid-character
    for limit in (64, 100, 1000, 4097):
        out = bounded(wide, limit)
        assert len(out.encode()) <= limit
        assert "bytes of traceback cut" in out
