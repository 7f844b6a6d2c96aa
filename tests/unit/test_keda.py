"""deploy/keda: the Kubernetes manifests plus a KEDA ScaledObject for the workers, checked
without a cluster (its queries run on real rows in tests/integration/test_autoscaling.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_kubernetes import ROOT, kustomize, validate

KEDA_DIR = ROOT / "deploy" / "keda"

Object = dict[str, Any]


@pytest.fixture(scope="module")
def keda_objects() -> dict[tuple[str, str], Object]:
    result = kustomize(KEDA_DIR)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_core_objects_pass_the_kubernetes_schemas(
    keda_objects: dict[tuple[str, str], Object], tmp_path: Path
) -> None:
    # The ScaledObject is KEDA's custom resource: no schema of Kubernetes' own has it.
    core = [o for o in keda_objects.values() if o["kind"] != "ScaledObject"]
    assert len(core) == len(keda_objects) - 1
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scaled_object_scales_the_worker_deployment(
    keda_objects: dict[tuple[str, str], Object],
) -> None:
    scaled = keda_objects[("ScaledObject", "notifyq-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) == {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "triggers",
    }
    target = keda_objects[("Deployment", spec["scaleTargetRef"]["name"])]
    assert target["metadata"]["name"] == "notifyq-worker"
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    # connectionFromEnv names a variable of the scaled container: the worker's DATABASE_URL.
    [container] = target["spec"]["template"]["spec"]["containers"]
    env = {e["name"] for e in container["env"]}
    for trigger in spec["triggers"]:
        assert trigger["type"] == "postgresql"
        metadata = trigger["metadata"]
        assert set(metadata) <= {
            "connectionFromEnv",
            "query",
            "targetQueryValue",
            "activationTargetQueryValue",
        }
        assert metadata["connectionFromEnv"] in env
        # KEDA wants the thresholds as strings of numbers.
        assert float(metadata["targetQueryValue"]) > 0
        assert "queue = 'default'" in metadata["query"]
    assert [t["name"] for t in spec["triggers"]] == ["due", "oldest-due"]
    assert spec["triggers"][1]["metricType"] == "Value"
