"""The built-in kinds every process has without an app (``reverse``, ``noop``, ``sleep``,
``fetch_url``, ``demo``): what ``notifyq serve`` runs before a user writes a handler, and what
the benchmarks and the demo seed use."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import trio

from notifyq.app import App, HandlerFn, Task
from notifyq.errors import PayloadError


def _text_of(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict) and isinstance(text := payload.get("text"), str):
        return text
    raise PayloadError(f'expected a JSON string or {{"text": string}}, got {_describe(payload)}')


def _describe(payload: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    if isinstance(payload, dict):
        keys = ", ".join(sorted(payload)[:5])
        return f"an object with keys [{keys}]" if keys else "an empty object"
    return names.get(type(payload), type(payload).__name__)


async def reverse(task: Task) -> str:
    return _text_of(task.payload)[::-1]


async def noop(task: Task) -> None:
    return None


async def sleep(task: Task) -> float:
    seconds = task.payload
    if isinstance(seconds, dict):
        seconds = seconds.get("seconds")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= 86400
    ):
        raise PayloadError(
            f'expected seconds from 0 to 86400 (a number or {{"seconds": n}}), '
            f"got {_describe(task.payload)}"
        )
    await trio.sleep(seconds)
    return float(seconds)


async def fetch_url(task: Task) -> dict[str, Any]:
    url = task.payload
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PayloadError(
            f'expected an http(s) URL (a string or {{"url": string}}), got {_describe(task.payload)}'
        )
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=True) as client:
        response = await client.get(url)
    return {
        "status": response.status_code,
        "bytes": len(response.content),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


class DemoFailure(Exception):
    """The demo kind's simulated failure."""


def demo_handler(min_delay_s: float, max_delay_s: float, failure_rate: float) -> HandlerFn:
    """The seed processor's job: sleep a while, reverse the text, sometimes fail."""

    async def demo(task: Task) -> str:
        text = _text_of(task.payload)
        await trio.sleep(random.uniform(min_delay_s, max_delay_s))
        if random.random() < failure_rate:
            raise DemoFailure(f"simulated failure (rate {failure_rate:g})")
        return text[::-1]

    return demo


def builtin_app(
    *,
    demo_min_delay_s: float = 1.0,
    demo_max_delay_s: float = 4.0,
    demo_failure_rate: float = 0.1,
) -> App:
    app = App()
    app.handler("reverse")(reverse)
    app.handler("noop")(noop)
    app.handler("sleep")(sleep)
    app.handler("fetch_url", timeout_s=10)(fetch_url)
    app.handler("demo")(demo_handler(demo_min_delay_s, demo_max_delay_s, demo_failure_rate))
    return app
