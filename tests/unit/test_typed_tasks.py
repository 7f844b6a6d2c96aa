"""Typed tasks without a database: what the decorator refuses, and what mypy sees."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from notifyq.app import App, current_task
from notifyq.errors import PayloadError

ROOT = Path(__file__).resolve().parents[2]


def test_a_signature_the_payload_cannot_name_is_refused() -> None:
    app = App()
    with pytest.raises(TypeError, match=r"parameter 'rest' must be nameable"):

        @app.task
        def spread(*rest: int) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'first' must be nameable"):

        @app.task
        def positional(first: int, /) -> None: ...

    with pytest.raises(TypeError, match=r"^task 'locked': an annotation has no JSON form"):

        @app.task(kind="locked")
        def locked(lock: threading.Lock) -> None: ...

    assert app.handlers == {}


def test_the_kind_is_module_and_qualname_unless_set() -> None:
    app = App()

    @app.task
    def send(to: str) -> None: ...

    @app.task(kind="mail.send", timeout_s=5)
    def send_mail(to: str) -> None: ...

    assert send.kind == f"{__name__}.test_the_kind_is_module_and_qualname_unless_set.<locals>.send"
    assert sorted(app.handlers) == sorted([send.kind, "mail.send"])
    assert app.handlers["mail.send"].timeout_s == 5
    assert app.handlers["mail.send"].runtime == "thread"


def test_the_handler_checks_the_payload_and_stores_the_annotated_result() -> None:
    app = App()

    @app.task(kind="add")
    def add(a: int, b: int = 1) -> int:
        return a + b

    run = app.handlers["add"].fn

    class Claimed:
        payload: object = {"a": "2"}

    assert run(Claimed()) == 3  # type: ignore[arg-type]
    Claimed.payload = ["not", "an", "object"]
    with pytest.raises(PayloadError, match=r"^invalid arguments of add \['not', 'an', 'object'\]"):
        run(Claimed())  # type: ignore[arg-type]


def test_the_function_reads_its_attempt_through_current_task() -> None:
    app = App()

    @app.task(kind="whoami")
    def whoami() -> int:
        return current_task().attempt

    class Claimed:
        payload: object = {}
        attempt = 2

    assert app.handlers["whoami"].fn(Claimed()) == 2  # type: ignore[arg-type]
    with pytest.raises(LookupError, match=r"^current_task\(\) is known only inside"):
        current_task()


@pytest.mark.slow  # mypy: under a second on the cache `make lint` leaves, 10-20 s cold
def test_mypy_sees_the_parameters_of_a_typed_task(tmp_path: Path) -> None:
    checked = tmp_path / "typed_use.py"
    checked.write_text(
        textwrap.dedent(
            """
            import psycopg
            import notifyq

            app = notifyq.App()

            @app.task
            def resize(image_id: int, width: int = 800) -> None: ...

            def produce(conn: psycopg.Connection[object]) -> int:
                resize.enqueue(conn, image_id="one")
                resize.enqueue(conn, image_id=1, height=2)
                return resize.enqueue(conn, image_id=1, width=800)

            async def produce_async(conn: psycopg.AsyncConnection[object]) -> int:
                return await resize.enqueue(conn, image_id=1)
            """
        )
    )
    found = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(checked)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    # Only the two wrong calls (lines 11 and 12) are errors; the right ones type-check,
    # the blocking one as an int and the asyncio one as an awaitable int.
    errors = {
        (int(line.split(":")[1]), line.rsplit("[", 1)[1])
        for line in found.stdout.splitlines()
        if ": error: " in line
    }
    assert errors == {(11, "call-overload]"), (12, "call-overload]")}, found.stdout
    assert 'matches argument types "Connection[object]", "str"' in found.stdout
    assert 'Unexpected keyword argument "height"' in found.stdout
