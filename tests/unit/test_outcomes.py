"""Outcomes: backoff, result encoding, error text, and the finish statement's columns."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Iterator

import pytest

from notifyq.outcomes import (
    MAX_ERROR_CHARS,
    Outcome,
    as_columns,
    backoff_s,
    clean_text,
    encode_result,
)


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
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
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
    [None, True, 0, -3, 1.5, "olleh", "", "日本語 ✓", [1, "a", None], {"a": {"b": [1, 2]}},
     "tab\tnewline\n", "\x01\x1f control"],
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
        f"result is not JSON-serialisable: Object of type {type_name} is not JSON serializable")


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


# --- as_columns --------------------------------------------------------------------------------


def test_as_columns_of_nothing() -> None:
    assert as_columns([]) == ([], [], [], [], [], [])


def test_as_columns_shapes_one_array_per_parameter() -> None:
    outcomes = [
        Outcome(1, 1, "done", result_json='"olleh"'),
        Outcome(2, 3, "error", error="boom\x00"),
        Outcome(3, 2, "retry", error="ValueError: x", delay_s=4.5),
        Outcome(4, 1, "cancelled", error="cancelled"),
        Outcome(5, 1, "release"),
    ]
    columns = as_columns(outcomes)
    assert len(columns) == 6
    assert all(len(column) == len(outcomes) for column in columns)
    ids, attempts, kinds, results, errors, delays = columns
    assert ids == [1, 2, 3, 4, 5]
    assert attempts == [1, 3, 2, 1, 1]
    assert kinds == ["done", "error", "retry", "cancelled", "release"]
    assert results == ['"olleh"', None, None, None, None]
    assert errors == [None, "boom\\0", "ValueError: x", "cancelled", None]
    assert delays == [0.0, 0.0, 4.5, 0.0, 0.0]


def test_as_columns_truncates_long_errors() -> None:
    (_, _, _, _, errors, _) = as_columns([Outcome(1, 1, "error", error="e" * 10_000)])
    assert len(errors[0]) <= MAX_ERROR_CHARS
    assert errors[0].endswith("… (truncated)")


def test_outcome_is_immutable() -> None:
    outcome = Outcome(1, 1, "done")
    with pytest.raises(AttributeError):
        outcome.kind = "error"  # type: ignore[misc]
