"""graphile-worker (Node) as a peer of `notifyq bench peers`.

The runner is ``node/graphile_runner.mjs`` (shipped with this package); graphile-worker
itself is installed outside the source tree, in the peers directory: ``NOTIFYQ_PEERS_DIR``,
by default ``$XDG_CACHE_HOME/notifyq/peers`` (``~/.cache/notifyq/peers``). ``make
bench-peers`` (``python -m notifyq.bench.graphile install``) copies ``node/package.json``
and its lock file there and runs ``npm ci``: the version is pinned by the lock file. Like
the Python peers it is optional: without ``node`` on PATH, or without graphile-worker in the
peers directory, the peer is reported as skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

NODE_FILES = ("package.json", "package-lock.json")
RUNNER = "graphile_runner.mjs"
TIMEOUT_S = 1800


def peers_dir() -> Path:
    """Where the Node peers are installed (NOTIFYQ_PEERS_DIR, or the user's cache)."""
    chosen = os.environ.get("NOTIFYQ_PEERS_DIR")
    if chosen:
        return Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "notifyq" / "peers"


def missing() -> str | None:
    """Why graphile-worker cannot run here (None: it can)."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    where = peers_dir()
    if not (where / "node_modules" / "graphile-worker" / "package.json").is_file():
        return f"graphile-worker is not installed in {where} (make bench-peers)"
    return None


def install() -> Path:
    """``npm ci`` of the pinned graphile-worker into the peers directory."""
    if shutil.which("npm") is None:
        raise SystemExit("npm is not on PATH: install Node.js (20 or later) and npm first")
    where = peers_dir()
    where.mkdir(parents=True, exist_ok=True)
    files = resources.files("notifyq.bench").joinpath("node")
    for name in NODE_FILES:
        (where / name).write_text(files.joinpath(name).read_text(encoding="utf-8"))
    command = ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"]
    subprocess.run(command, cwd=where, check=True, timeout=600)
    return where


def run(dsn: str, mode: str, opts: dict[str, Any]) -> dict[str, Any]:
    """One drain or latency run of the runner script; its JSON result."""
    options = {**opts, "clock_tick_s": 1 / os.sysconf("SC_CLK_TCK")}
    with resources.as_file(resources.files("notifyq.bench").joinpath("node", RUNNER)) as script:
        args = ["node", str(script), str(peers_dir()), mode, dsn, json.dumps(options)]
        # graphile-worker's default logging (a line per job): NO_LOG_SUCCESS would quiet it.
        env = {k: v for k, v in os.environ.items() if k != "NO_LOG_SUCCESS"}
        done = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False
        )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:] or ["no output"]
        raise RuntimeError(f"graphile-worker {mode} failed: {' | '.join(tail)}")
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"version"')]
    if not lines:
        raise RuntimeError(f"graphile-worker {mode}: no result on stdout")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m notifyq.bench.graphile install")
    print(f"graphile-worker installed in {install()}")


if __name__ == "__main__":
    main()
