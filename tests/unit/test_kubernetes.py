"""deploy/kubernetes, checked without a cluster.

`kubectl kustomize` (Debian's `kubernetes-client`, installed by .ci/system-deps) builds the
manifests, `kubernetes-validate` (a dev extra) checks every object against the Kubernetes
OpenAPI schemas in strict mode, and the tests below check what running notifyq needs:
replicas, the schema wait, probes, the disruption budgets, the grace period, resources,
the security context and where the secrets come from.
"""

from __future__ import annotations

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
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent

Object = dict[str, Any]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: make setup (dev extras) and .ci/system-deps install it"
    return found


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = kustomize(KUSTOMIZE_DIR)
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("kustomize") / "notifyq.yaml"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def objects(built: Path) -> dict[tuple[str, str], Object]:
    docs = [d for d in yaml.safe_load_all(built.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_spec(obj: Object) -> Object:
    spec: Object = obj["spec"]["template"]["spec"]
    return spec


def notifyq_pods(objects: dict[tuple[str, str], Object]) -> dict[str, Object]:
    return {
        name: pod_spec(obj)
        for (kind, name), obj in objects.items()
        if kind in ("Deployment", "Job") and name.startswith("notifyq-")
    }


def test_every_object_passes_the_kubernetes_schemas(built: Path) -> None:
    result = validate(built)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validation_catches_a_broken_object(built: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(built.read_text().replace("replicas: 3", "replicas: three", 1))
    assert validate(broken).returncode != 0
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        built.read_text().replace(
            "maxUnavailable: 1\n  selector:", "maxUnavailabl: 1\n  selector:", 1
        )
    )
    assert validate(unknown).returncode != 0


def test_the_objects(objects: dict[tuple[str, str], Object]) -> None:
    assert set(objects) == {
        ("ConfigMap", "notifyq"),
        ("Job", "notifyq-migrate"),
        ("Deployment", "notifyq-worker"),
        ("Deployment", "notifyq-web"),
        ("Service", "notifyq-web"),
        ("PodDisruptionBudget", "notifyq-worker"),
        ("PodDisruptionBudget", "notifyq-web"),
        ("StatefulSet", "notifyq-postgres"),
        ("Service", "notifyq-postgres"),
    }
    assert objects[("Deployment", "notifyq-web")]["spec"]["replicas"] == 2
    assert objects[("Deployment", "notifyq-worker")]["spec"]["replicas"] == 3


def test_commands_and_the_schema_wait(objects: dict[tuple[str, str], Object]) -> None:
    pods = notifyq_pods(objects)
    assert pods["notifyq-migrate"]["containers"][0]["args"] == ["migrate"]
    assert pods["notifyq-worker"]["containers"][0]["args"] == ["worker"]
    assert pods["notifyq-web"]["containers"][0]["args"] == ["web"]
    for name in ("notifyq-worker", "notifyq-web"):
        (init,) = pods[name]["initContainers"]
        assert "notifyq migrate --check" in " ".join(init["command"]), name
    for spec in pods.values():
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["image"] == "notifyq:0.1.0"
            args = container.get("args") or []
            assert not args or args[0] in main.commands


def test_probes(objects: dict[tuple[str, str], Object]) -> None:
    pods = notifyq_pods(objects)
    web = pods["notifyq-web"]["containers"][0]
    assert web["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert web["livenessProbe"]["httpGet"]["port"] == "http"
    worker = pods["notifyq-worker"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == ["notifyq", "health"], probe
        # notifyq health starts Python and connects: not more often than every few seconds
        assert worker[probe]["periodSeconds"] >= 5 and worker[probe]["timeoutSeconds"] >= 5


def test_disruption_budgets(objects: dict[tuple[str, str], Object]) -> None:
    for name in ("notifyq-web", "notifyq-worker"):
        selector = objects[("PodDisruptionBudget", name)]["spec"]["selector"]["matchLabels"]
        deployment = objects[("Deployment", name)]
        assert selector == deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_grace_period_above_shutdown_timeout(objects: dict[tuple[str, str], Object]) -> None:
    shutdown_timeout = float(objects[("ConfigMap", "notifyq")]["data"]["SHUTDOWN_TIMEOUT"])
    for name in ("notifyq-web", "notifyq-worker"):
        grace = pod_spec(objects[("Deployment", name)])["terminationGracePeriodSeconds"]
        assert grace >= shutdown_timeout + 10, name


def test_resources_and_security_context(objects: dict[tuple[str, str], Object]) -> None:
    for (kind, name), obj in objects.items():
        if kind not in ("Deployment", "Job", "StatefulSet"):
            continue
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            where = (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            # a read-only root: /tmp is an emptyDir
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, where
    # The image runs as uid 10001 (Dockerfile): the notifyq pods ask for the same.
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()
    for spec in notifyq_pods(objects).values():
        assert spec["securityContext"]["runAsUser"] == 10001


def env_of(container: Object) -> dict[str, Object]:
    return {e["name"]: e for e in container.get("env", [])}


def test_secrets_come_from_the_secret(objects: dict[tuple[str, str], Object]) -> None:
    for name, spec in notifyq_pods(objects).items():
        for c in spec["containers"] + spec.get("initContainers", []):
            env = env_of(c)
            ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "notifyq", "key": "DATABASE_URL"}, (name, c["name"])
            assert c["envFrom"] == [{"configMapRef": {"name": "notifyq"}}]
    web = pods_container(objects, "notifyq-web")
    assert env_of(web)["API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "notifyq"
    assert env_of(web)["HTTP_HOST"]["value"] == "0.0.0.0"  # needs the token (it has one)
    pg = pods_container(objects, "notifyq-postgres")
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "notifyq"
    # The ConfigMap holds settings notifyq knows, and no secret.
    data = objects[("ConfigMap", "notifyq")]["data"]
    assert set(data) <= settings.ENV_NAMES
    assert not {"DATABASE_URL", "API_TOKEN"} & set(data)


def pods_container(objects: dict[tuple[str, str], Object], name: str) -> Object:
    for (kind, n), obj in objects.items():
        if n == name and kind in ("Deployment", "StatefulSet"):
            container: Object = pod_spec(obj)["containers"][0]
            return container
    raise AssertionError(name)


def test_postgres_keeps_its_data(objects: dict[tuple[str, str], Object]) -> None:
    sts = objects[("StatefulSet", "notifyq-postgres")]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"]
        for m in pods_container(objects, "notifyq-postgres")["volumeMounts"]
    }
    assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql"
    assert sts["spec"]["serviceName"] == "notifyq-postgres"


# --- deploy/cloudnativepg: the same pods on a CloudNativePG Cluster -------------------

CNPG_DIR = ROOT / "deploy" / "cloudnativepg"


@pytest.fixture(scope="module")
def cnpg_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = kustomize(CNPG_DIR)
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("cnpg") / "notifyq.yaml"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def cnpg_objects(cnpg_built: Path) -> dict[tuple[str, str], Object]:
    docs = [d for d in yaml.safe_load_all(cnpg_built.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_cloudnativepg_objects_pass_the_schemas(
    cnpg_objects: dict[tuple[str, str], Object], tmp_path: Path
) -> None:
    # The Cluster is the operator's custom resource: no schema of Kubernetes' own has it.
    core = [o for o in cnpg_objects.values() if o["kind"] != "Cluster"]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloudnativepg_cluster_replaces_the_statefulset(
    cnpg_objects: dict[tuple[str, str], Object],
) -> None:
    assert ("StatefulSet", "notifyq-postgres") not in cnpg_objects
    assert ("Service", "notifyq-postgres") not in cnpg_objects
    cluster = cnpg_objects[("Cluster", "notifyq-db")]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["postgresql"]["synchronous"]["number"] >= 1  # no acknowledged commit lost
    assert spec["bootstrap"]["initdb"] == {"database": "app", "owner": "app"}


def test_cloudnativepg_rw_feeds_database_url_and_ro_the_web_reads(
    cnpg_objects: dict[tuple[str, str], Object],
) -> None:
    for name, spec in notifyq_pods(cnpg_objects).items():
        for c in spec["containers"] + spec.get("initContainers", []):
            ref = env_of(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            # The operator's Secret; its `uri` names the -rw Service, always the primary.
            assert ref == {"name": "notifyq-db-app", "key": "uri"}, (name, c["name"])
    web = pods_container(cnpg_objects, "notifyq-web")
    read_url = env_of(web)["READ_DATABASE_URL"]["value"]
    assert read_url == "postgresql://$(DB_USER):$(DB_PASSWORD)@notifyq-db-ro:5432/app"
    names = [e["name"] for e in web["env"]]
    # Kubernetes expands $(VAR) only from variables defined before it.
    assert names.index("DB_USER") < names.index("READ_DATABASE_URL")
    assert names.index("DB_PASSWORD") < names.index("READ_DATABASE_URL")
    assert "READ_DATABASE_URL" not in env_of(pods_container(cnpg_objects, "notifyq-worker"))
    assert env_of(web)["API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "notifyq"
