"""Handlers: the built-in kinds, the App registry and loading an app by name."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from notifyq import kinds as handlers
from notifyq.app import App, Task, load_app
from notifyq.engine.runtimes import Threads
from notifyq.errors import ConfigError, Fail, PayloadError
from notifyq.kinds import DemoFailure, builtin_app, demo_handler

# Loaded by name in the load_app tests below.
APP = App()


@APP.handler("custom")
async def _custom(task: Task) -> str:
    return "custom"


NOT_AN_APP: dict[str, dict[str, object]] = {"handlers": {}}

TEXT = 'expected a JSON string or {"text": string}, got '
SECONDS = 'expected seconds from 0 to 86400 (a number or {"seconds": n}), got '
URL = 'expected an http(s) URL (a string or {"url": string}), got '


def task(payload: Any, kind: str = "k") -> Task:
    return Task(id=1, queue="default", kind=kind, payload=payload, attempt=1, max_attempts=3)


@pytest.fixture
def seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(7)
    try:
        yield
    finally:
        random.setstate(state)


# --- reverse -----------------------------------------------------------------------------


async def test_reverse_a_string() -> None:
    assert await handlers.reverse(task("hello")) == "olleh"
    assert await handlers.reverse(task("")) == ""
    assert await handlers.reverse(task("añb✓")) == "✓bña"


async def test_reverse_an_object_with_text() -> None:
    assert await handlers.reverse(task({"text": "abc"})) == "cba"
    assert await handlers.reverse(task({"text": "abc", "extra": 1})) == "cba"


@pytest.mark.parametrize(
    ("payload", "described"),
    [
        (["a", "b"], "an array"),
        ([], "an array"),
        (42, "a number"),
        (4.5, "a number"),
        (True, "a boolean"),
        (None, "null"),
        ({"word": "abc"}, "an object with keys [word]"),
        ({"text": 5}, "an object with keys [text]"),
        ({}, "an empty object"),
        ({"f": 1, "e": 2, "d": 3, "c": 4, "b": 5, "a": 6}, "an object with keys [a, b, c, d, e]"),
    ],
)
async def test_reverse_refuses_other_payloads(payload: Any, described: str) -> None:
    with pytest.raises(PayloadError) as caught:
        await handlers.reverse(task(payload))
    assert str(caught.value) == TEXT + described


def test_payload_error_fails_without_retry() -> None:
    assert issubclass(PayloadError, Fail)


async def test_noop_returns_none() -> None:
    await handlers.noop(task({"anything": [1, 2]}))  # returns None: the result column is null


# --- sleep -----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [5, 2.5, {"seconds": 5}, {"seconds": 0.25}, 0])
async def test_sleep_sleeps_that_long(autojump_clock: trio.testing.MockClock, payload: Any) -> None:
    expected = float(payload["seconds"] if isinstance(payload, dict) else payload)
    start = trio.current_time()
    result = await handlers.sleep(task(payload))
    assert result == expected
    assert isinstance(result, float)
    assert trio.current_time() - start == pytest.approx(expected)


async def test_sleep_accepts_a_whole_day(autojump_clock: trio.testing.MockClock) -> None:
    assert await handlers.sleep(task(86400)) == 86400.0


@pytest.mark.parametrize(
    ("payload", "described"),
    [
        (-1, "a number"),
        (86401, "a number"),
        (math.inf, "a number"),
        (math.nan, "a number"),
        ("5", "a string"),
        (True, "a boolean"),
        (None, "null"),
        ([5], "an array"),
        ({"seconds": "5"}, "an object with keys [seconds]"),
        ({"secs": 5}, "an object with keys [secs]"),
        ({"seconds": False}, "an object with keys [seconds]"),
        ({}, "an empty object"),
    ],
)
async def test_sleep_refuses_bad_payloads(
    autojump_clock: trio.testing.MockClock, payload: Any, described: str
) -> None:
    start = trio.current_time()
    with pytest.raises(PayloadError) as caught:
        await handlers.sleep(task(payload))
    assert str(caught.value) == SECONDS + described
    assert trio.current_time() == start  # refused before sleeping


# --- fetch_url (payload checks only: no network) ----------------------------------------------


@pytest.mark.parametrize(
    ("payload", "described"),
    [
        ("ftp://example.com/file", "a string"),
        ("example.com", "a string"),
        ("", "a string"),
        (None, "null"),
        (5, "a number"),
        (["http://example.com"], "an array"),
        ({"url": 5}, "an object with keys [url]"),
        ({"href": "http://example.com"}, "an object with keys [href]"),
        ({"url": "file:///etc/passwd"}, "an object with keys [url]"),
        ({}, "an empty object"),
    ],
)
async def test_fetch_url_refuses_bad_payloads(payload: Any, described: str) -> None:
    with pytest.raises(PayloadError) as caught:
        await handlers.fetch_url(task(payload))
    assert str(caught.value) == URL + described


# --- demo ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
async def test_demo_always_fails_at_rate_one(autojump_clock: trio.testing.MockClock) -> None:
    demo = demo_handler(1.0, 4.0, 1.0)
    for _ in range(50):
        start = trio.current_time()
        with pytest.raises(DemoFailure) as caught:
            await demo(task("hello"))
        assert str(caught.value) == "simulated failure (rate 1)"
        assert 1.0 <= trio.current_time() - start <= 4.0


@pytest.mark.usefixtures("seeded")
async def test_demo_never_fails_at_rate_zero(autojump_clock: trio.testing.MockClock) -> None:
    demo = demo_handler(1.0, 4.0, 0.0)
    waited = []
    for i in range(300):
        start = trio.current_time()
        assert await demo(task({"text": f"task {i}"})) == f"task {i}"[::-1]
        waited.append(trio.current_time() - start)
    assert all(1.0 <= w <= 4.0 for w in waited)
    assert max(waited) - min(waited) > 2.0  # the delay is random across the range


@pytest.mark.usefixtures("seeded")
async def test_demo_fails_about_as_often_as_asked(autojump_clock: trio.testing.MockClock) -> None:
    demo = demo_handler(0.0, 0.0, 0.25)
    failures = 0
    for _ in range(1000):
        try:
            await demo(task("x"))
        except DemoFailure as exc:
            assert str(exc) == "simulated failure (rate 0.25)"
            failures += 1
    assert 180 <= failures <= 320


async def test_demo_refuses_bad_payloads_before_sleeping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    demo = demo_handler(10.0, 10.0, 0.0)
    start = trio.current_time()
    with pytest.raises(PayloadError) as caught:
        await demo(task([1, 2]))
    assert str(caught.value) == TEXT + "an array"
    assert trio.current_time() == start


# --- App ------------------------------------------------------------------------------------------


async def _fn(task: Task) -> str:
    return "fn"


async def _other(task: Task) -> str:
    return "other"


def test_handler_registers_by_kind_and_returns_the_function() -> None:
    app = App()
    assert app.handler("resize", timeout_s=60)(_fn) is _fn
    registered = app.get("resize")
    assert registered is not None
    assert (registered.kind, registered.fn, registered.timeout_s) == ("resize", _fn, 60)
    assert app.get("missing") is None


def test_registering_a_kind_again_replaces_it() -> None:
    app = App()
    app.handler("k")(_fn)
    app.handler("k", timeout_s=5)(_other)
    registered = app.get("k")
    assert registered is not None
    assert (registered.fn, registered.timeout_s) == (_other, 5)
    assert list(app.handlers) == ["k"]


def test_apps_do_not_share_handlers() -> None:
    first, second = App(), App()
    first.handler("k")(_fn)
    assert second.get("k") is None


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("", "kind must be 1-128 characters, got ''"),
        ("k" * 129, f"kind must be 1-128 characters, got '{'k' * 129}'"),
    ],
)
def test_bad_kinds_are_refused(kind: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        App().handler(kind)
    assert str(caught.value) == message


def test_longest_kind_is_accepted() -> None:
    app = App()
    app.handler("k" * 128)(_fn)
    assert app.get("k" * 128) is not None


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (0, "timeout_s must be > 0, got 0"),
        (-1.5, "timeout_s must be > 0, got -1.5"),
    ],
)
def test_bad_timeouts_are_refused(timeout: float, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        App().handler("k", timeout_s=timeout)
    assert str(caught.value) == message


def test_nan_timeout_is_refused() -> None:
    # A NaN limit would reach trio.move_on_at(started + nan) in the worker, which raises.
    with pytest.raises(ValueError):
        App().handler("k", timeout_s=math.nan)


def test_merged_prefers_the_other_app() -> None:
    base, mine = App(), App()
    base.handler("shared", timeout_s=1)(_fn)
    base.handler("base_only")(_fn)
    mine.handler("shared", timeout_s=2)(_other)
    mine.handler("mine_only")(_other)
    merged = base.merged(mine)
    assert set(merged.handlers) == {"shared", "base_only", "mine_only"}
    shared = merged.get("shared")
    assert shared is not None
    assert (shared.fn, shared.timeout_s) == (_other, 2)
    # Neither input is changed.
    assert set(base.handlers) == {"shared", "base_only"}
    assert set(mine.handlers) == {"shared", "mine_only"}
    base_shared = base.get("shared")
    assert base_shared is not None
    assert base_shared.fn is _fn
    assert merged is not base
    assert merged is not mine


def test_builtin_app_has_the_documented_kinds() -> None:
    app = builtin_app()
    assert set(app.handlers) == {"reverse", "noop", "sleep", "fetch_url", "demo"}
    fetch = app.get("fetch_url")
    assert fetch is not None
    assert fetch.timeout_s == 10
    reverse = app.get("reverse")
    assert reverse is not None
    assert reverse.timeout_s is None


async def test_an_app_may_replace_a_builtin_kind() -> None:
    mine = App()
    mine.handler("reverse")(_other)
    merged = builtin_app().merged(mine)
    handler = merged.get("reverse")
    assert handler is not None
    assert await handler.fn(task("abc")) == "other"


async def test_builtin_demo_uses_the_given_settings(autojump_clock: trio.testing.MockClock) -> None:
    demo = builtin_app(demo_min_delay_s=3, demo_max_delay_s=3, demo_failure_rate=0).get("demo")
    assert demo is not None
    start = trio.current_time()
    assert await demo.fn(task("abc")) == "cba"
    assert trio.current_time() - start == pytest.approx(3.0)


# --- load_app -------------------------------------------------------------------------------------


def test_load_app_returns_the_app() -> None:
    assert load_app(f"{__name__}:APP") is APP


def test_load_app_missing_module() -> None:
    with pytest.raises(ConfigError) as caught:
        load_app("no_such_notifyq_module:app")
    assert str(caught.value) == (
        "invalid NOTIFYQ_APP='no_such_notifyq_module:app': cannot import "
        "no_such_notifyq_module: No module named 'no_such_notifyq_module'"
    )


def test_load_app_missing_submodule() -> None:
    with pytest.raises(ConfigError) as caught:
        load_app("notifyq.no_such_module:app")
    assert str(caught.value) == (
        "invalid NOTIFYQ_APP='notifyq.no_such_module:app': cannot import "
        "notifyq.no_such_module: No module named 'notifyq.no_such_module'"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "json:dumps",
            "invalid NOTIFYQ_APP='json:dumps': dumps is function, expected a notifyq.App",
        ),
        (
            "notifyq.app:App",
            "invalid NOTIFYQ_APP='notifyq.app:App': App is type, expected a notifyq.App",
        ),
        (
            f"{__name__}:NOT_AN_APP",
            f"invalid NOTIFYQ_APP='{__name__}:NOT_AN_APP': NOT_AN_APP is dict, "
            "expected a notifyq.App",
        ),
    ],
)
def test_load_app_attribute_that_is_not_an_app(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_app(spec)
    assert str(caught.value) == message


def test_load_app_missing_attribute() -> None:
    with pytest.raises(ConfigError) as caught:
        load_app("json:no_such_attribute")
    assert str(caught.value).startswith("invalid NOTIFYQ_APP='json:no_such_attribute': ")
    assert str(caught.value).endswith("expected a notifyq.App")


async def test_a_plain_def_handler_runs_in_a_thread() -> None:
    # It used to be accepted, run its side effects, then fail every attempt with
    # "object str can't be used in 'await' expression"; then it was refused. Now it is a
    # handler of its own kind: run in a worker thread (tests/integration/
    # test_handler_runtimes.py runs all three kinds through a service).
    app = App()

    @app.handler("shout")
    def shout(task: Task) -> str:
        return str(task.payload).upper()

    handler = app.get("shout")
    assert handler is not None and handler.runtime == "thread"
    task = Task(1, "default", "shout", "hey", 1, 3)
    assert await Threads(1).run(handler.fn, task) == "HEY"


def test_an_object_with_an_async_call_is_a_handler() -> None:
    class Resize:
        async def __call__(self, task: Task) -> str:
            return "ok"

    app = App()
    app.handler("resize")(Resize())
    assert app.get("resize") is not None
