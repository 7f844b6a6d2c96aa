"""A real high-availability PostgreSQL cluster on this machine, for `notifyq bench failover`.

etcd (one member) is Patroni's store; three Patroni agents each manage a PostgreSQL server
(the machine's ``pg_config --bindir``, PostgreSQL 15 on Debian bookworm) on its own port and
data directory, with streaming replication; Patroni's REST API answers on its own port per
node. Everything lives in one temporary directory and is stopped, and deleted, when the
block ends. As root, Patroni (and so PostgreSQL) runs as the ``postgres`` user.

The packages: ``.ci/ha-deps`` (Debian ``patroni``, ``etcd-server``). docs/operations.md
"High availability" says how to build the same by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import trio

from notifyq import errors
from notifyq.bench.common import progress

SCOPE = "notifyq-ha"
PASSWORD = "notifyq-ha"  # a throwaway cluster on 127.0.0.1: every role uses this one
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Ports:
    etcd: int = 23790
    etcd_peer: int = 23800
    postgres: int = 25432  # node i: postgres + i
    rest: int = 28008  # node i: rest + i


@dataclass
class Node:
    name: str
    port: int
    rest_port: int
    data_dir: Path
    config: Path
    process: trio.Process | None = None
    log: IO[str] | None = None  # the agent's stdout and stderr, closed with the cluster


def _bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _config(node: Node, root: Path, ports: Ports, *, sync: bool) -> str:
    """One Patroni agent's YAML (JSON is YAML)."""
    dcs = {
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 5,
        "maximum_lag_on_failover": 16 * 1024 * 1024,
        # A crashed primary fails over at once instead of being restarted in place.
        "master_start_timeout": 0,
        "primary_start_timeout": 0,
        "synchronous_mode": sync,
        "synchronous_mode_strict": False,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "wal_log_hints": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "max_connections": 200,
                "wal_keep_size": "256MB",
            },
        },
    }
    config = {
        "scope": SCOPE,
        "name": node.name,
        "log": {"level": "WARNING", "dir": str(root / "log" / node.name)},
        "restapi": {
            "listen": f"127.0.0.1:{node.rest_port}",
            "connect_address": f"127.0.0.1:{node.rest_port}",
        },
        "etcd3": {"hosts": [f"127.0.0.1:{ports.etcd}"]},
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            "pg_hba": [
                "local all all trust",
                "host replication replicator 127.0.0.1/32 md5",
                "host all all 127.0.0.1/32 md5",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{node.port}",
            "connect_address": f"127.0.0.1:{node.port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(_bindir()),
            "pgpass": str(root / f"pgpass-{node.name}"),
            "authentication": {
                "replication": {"username": "replicator", "password": PASSWORD},
                "superuser": {"username": "postgres", "password": PASSWORD},
                "rewind": {"username": "postgres", "password": PASSWORD},
            },
            "parameters": {"unix_socket_directories": str(root)},
        },
    }
    return json.dumps(config, indent=2)


class Cluster:
    """The running cluster: its nodes, the leader, and the faults a bench injects."""

    def __init__(self, root: Path, nodes: list[Node], ports: Ports) -> None:
        self.root = root
        self.nodes = nodes
        self.ports = ports

    def url(self, database: str) -> str:
        """The multi-host URL of ``database``: whichever node is the writable primary."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return (
            f"postgresql://postgres:{PASSWORD}@{hosts}/{database}?target_session_attrs=read-write"
        )

    def node_url(self, node: Node, database: str) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{node.port}/{database}"

    async def members(self) -> list[dict[str, object]]:
        """``patronictl list`` as JSON: each member's name, role, state and lag."""
        result = await trio.run_process(
            ["patronictl", "-c", str(self.nodes[0].config), "list", "-f", "json"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        if result.returncode != 0:
            return []
        members: list[dict[str, object]] = json.loads(result.stdout or b"[]")
        return members

    async def leader(self) -> Node | None:
        for member in await self.members():
            if member.get("Role") == "Leader" and member.get("State") == "running":
                return self._node(str(member["Member"]))
        return None

    def _node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    async def wait_ready(self, *, replicas: int, timeout_s: float = READY_TIMEOUT_S) -> Node:
        """Until a leader runs and ``replicas`` replicas stream from it; the leader."""
        with trio.fail_after(timeout_s):
            while True:
                members = await self.members()
                streaming = [
                    m
                    for m in members
                    if m.get("Role") in ("Replica", "Sync Standby")
                    and m.get("State") in ("streaming", "running")
                ]
                leader = await self.leader()
                if leader is not None and len(streaming) >= replicas:
                    return leader
                self._check_alive()
                await trio.sleep(0.5)

    async def wait_new_leader(self, old: Node, *, timeout_s: float = READY_TIMEOUT_S) -> Node:
        with trio.fail_after(timeout_s):
            while True:
                leader = await self.leader()
                if leader is not None and leader is not old:
                    return leader
                await trio.sleep(0.1)

    async def switchover(self) -> tuple[Node, Node]:
        """``patronictl switchover`` to a (sync) replica; the old and the new leader."""
        old = await self.leader()
        if old is None:
            raise errors.NotifyqError("no leader to switch over from")
        result = await trio.run_process(
            ["patronictl", "-c", str(old.config), "switchover", "--leader", old.name, "--force"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        if result.returncode != 0:
            raise errors.NotifyqError(f"switchover failed: {result.stderr.decode().strip()}")
        return old, await self.wait_new_leader(old)

    async def kill_postmaster(self) -> tuple[Node, Node]:
        """SIGKILL of the leader's postmaster (its Patroni agent lives on); the old leader
        and the leader once a primary runs again. Patroni 3.0 holds the leader key and
        restarts the server in place (crash recovery) when it can, so both are often the
        same node."""
        old = await self.leader()
        if old is None:
            raise errors.NotifyqError("no leader to kill")
        pidfile = old.data_dir / "postmaster.pid"
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(READY_TIMEOUT_S):
            while True:
                await trio.sleep(0.1)
                leader = await self.leader()
                if leader is not None and leader is not old:
                    return old, leader
                if leader is old and _pid_of(pidfile) not in (None, pid):
                    return old, leader

    async def start_agent(self, node: Node) -> None:
        if node.log is None:
            node.log = _append(self.root / "log" / node.name / "stdout.log")
        node.process = await trio.lowlevel.open_process(
            ["patroni", str(node.config)],
            stdout=node.log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            user=_run_as(),
            group=_run_as(),
            extra_groups=[] if _run_as() else None,
        )

    async def crash_node(self) -> tuple[Node, Node]:
        """SIGKILL of the leader's Patroni agent and postmaster at once (the machine
        dies): the others promote a replica once the leader key expires (its TTL); the
        agent is started again afterwards and the old primary rejoins as a replica
        (pg_rewind). The old and the new leader."""
        old = await self.leader()
        if old is None or old.process is None:
            raise errors.NotifyqError("no leader to crash")
        pid = int((old.data_dir / "postmaster.pid").read_text().split()[0])
        old.process.kill()
        os.kill(pid, signal.SIGKILL)
        await old.process.wait()
        new = await self.wait_new_leader(old)
        await self.start_agent(old)
        return old, new

    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.returncode is not None:
                log = self.root / "log" / node.name / "patroni.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise errors.NotifyqError(f"patroni {node.name} exited: {tail}")


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: Patroni runs as the postgres user then."""
    return "postgres" if os.geteuid() == 0 else None


async def _stop(process: trio.Process | None, *, grace_s: float) -> None:
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(grace_s):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


def _append(path: Path) -> IO[str]:
    """A log file for a process of the cluster (closed when the cluster stops)."""
    return path.open("a")


def _pid_of(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill_leftover_postmasters(nodes: list[Node]) -> None:
    for node in nodes:
        pidfile = node.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def _lay_out(ports: Ports, count: int, *, sync: bool) -> tuple[Path, list[Node]]:
    """The temporary directory: each agent's configuration and log folder."""
    root = Path(tempfile.mkdtemp(prefix="notifyq-ha-"))
    root.chmod(0o755)
    members = [
        Node(
            name=f"pg{i}",
            port=ports.postgres + i,
            rest_port=ports.rest + i,
            data_dir=root / f"pg{i}",
            config=root / f"pg{i}.yml",
        )
        for i in range(1, count + 1)
    ]
    for node in members:
        (root / "log" / node.name).mkdir(parents=True)
        node.config.write_text(_config(node, root, ports, sync=sync))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        for path in root.rglob("*"):
            shutil.chown(path, "postgres", "postgres")
    return root, members


@asynccontextmanager
async def open_cluster(
    *, sync: bool, nodes: int = 3, ports: Ports = Ports()
) -> AsyncIterator[Cluster]:
    """Start etcd and ``nodes`` Patroni agents; stop them all (and delete their data) at
    the end of the block."""
    for tool in ("etcd", "patroni", "patronictl"):
        if shutil.which(tool) is None:
            raise errors.ConfigError(f"{tool} is not installed: run .ci/ha-deps")
    root, members = _lay_out(ports, nodes, sync=sync)
    etcd_log = _append(root / "etcd.log")
    etcd: trio.Process | None = None
    cluster = Cluster(root, members, ports)
    try:
        etcd = await trio.lowlevel.open_process(
            [
                "etcd",
                "--name=notifyq-ha",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ports.etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{ports.etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-cluster=notifyq-ha=http://127.0.0.1:{ports.etcd_peer}",
            ],
            stdout=etcd_log,
            stderr=subprocess.STDOUT,
        )
        for node in members:
            await cluster.start_agent(node)
            if node is members[0]:
                # The first one bootstraps; the others clone it (pg_basebackup) once it leads.
                await cluster.wait_ready(replicas=0)
        leader = await cluster.wait_ready(replicas=nodes - 1)
        progress(f"ha cluster up: leader {leader.name}, {'sync' if sync else 'async'} replication")
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            for node in members:
                await _stop(node.process, grace_s=30)
            _kill_leftover_postmasters(members)
            await _stop(etcd, grace_s=10)
            etcd_log.close()
            for node in members:
                if node.log is not None:
                    node.log.close()
            if os.environ.get("NOTIFYQ_HA_KEEP") is None:
                shutil.rmtree(root, ignore_errors=True)
            else:
                progress(f"ha cluster files kept in {root}")
