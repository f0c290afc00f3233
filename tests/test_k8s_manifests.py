"""The Kubernetes manifests in deploy/k8s: valid against the Kubernetes schemas (offline,
with kubernetes-validate's bundled schemas) and consistent with the service's contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) validates the manifests"
)

K8S_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
# The oldest and newest Kubernetes minor versions the manifests are meant for.
K8S_VERSIONS = ("1.27.0", "1.33.0")


def documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    docs = documents()
    assert set(docs) == {
        "Deployment/fmnist-service",
        "Service/fmnist-service",
        "HorizontalPodAutoscaler/fmnist-service",
        "PodDisruptionBudget/fmnist-service",
        "ConfigMap/fmnist-aliases",
    }
    for name, doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is not valid Kubernetes {version}: {exc.message} at {exc.path}")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_deployment_matches_the_service_contract() -> None:
    docs = documents()
    deployment = docs["Deployment/fmnist-service"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == 3000
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FMNIST_MODEL_DIR"] == "/app/models"
    # One worker per CPU of the limit: more would oversubscribe the pod's CPU quota.
    assert int(env["FMNIST_WORKERS"]) == int(container["resources"]["limits"]["cpu"])
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The Service, the HPA and the PDB all point at this Deployment's pods.
    labels = pod["metadata"]["labels"]
    selector = docs["Service/fmnist-service"]["spec"]["selector"]
    assert selector.items() <= labels.items()
    assert (
        docs["PodDisruptionBudget/fmnist-service"]["spec"]["selector"]["matchLabels"].items()
        <= labels.items()
    )
    target = docs["HorizontalPodAutoscaler/fmnist-service"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_a_rollout_loses_no_request() -> None:
    """maxUnavailable 0, a preStop wait, and a grace period that holds the wait and the drain;
    the aliases ConfigMap mounted as a folder (a subPath mount never sees an edit)."""
    deployment = documents()["Deployment/fmnist-service"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    env = {e["name"]: e["value"] for e in container["env"]}
    drain = float(env["FMNIST_DRAIN_S"])
    assert pod["terminationGracePeriodSeconds"] >= float(command[1]) + drain + 5
    mount = next(m for m in container["volumeMounts"] if m["name"] == "aliases")
    assert "subPath" not in mount
    assert env["FMNIST_ALIASES_FILE"] == mount["mountPath"] + "/aliases.json"
    volume = next(v for v in pod["volumes"] if v["name"] == "aliases")
    assert volume["configMap"]["name"] == "fmnist-aliases"
    assert "aliases.json" in documents()["ConfigMap/fmnist-aliases"]["data"]


def test_a_broken_manifest_is_caught() -> None:
    deployment = documents()["Deployment/fmnist-service"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["httpGet"]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
