"""deploy/monitoring's Kubernetes manifests, validated offline like deploy/k8s.

The ConfigMaps (kustomize's configMapGenerator) are core objects: validated against the
Kubernetes schemas with kubernetes-validate. ServiceMonitor and PrometheusRule are the
Prometheus operator's CRDs, which those schemas do not have: they are checked against
SCHEMAS below, written from the fields of the operator's CRDs (monitoring.coreos.com/v1)
that these manifests use, with unknown fields refused so that a typo fails. The
PrometheusRule's groups are rules.yaml's, byte for byte, and the one source is checked by
promtool (tests/test_monitoring_rules.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) validates the manifests"
)

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
OPERATOR = MONITORING / "operator"
K8S = REPO / "deploy" / "k8s"
K8S_VERSIONS = ("1.27.0", "1.33.0")  # as tests/test_k8s_manifests.py
CONFIGMAP_LIMIT = 1024 * 1024  # bytes of data a ConfigMap may hold
JOB = "fmnist-service"  # the job the rules select (up{job=...})

DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": LABELS,
        "annotations": LABELS,
    },
    "additionalProperties": False,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": {"type": "object"},
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matchLabels": LABELS,
                            "matchExpressions": {"type": "array"},
                        },
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "targetPort": {"type": ["string", "integer"]},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": DURATION},
                                "scrapeTimeout": {"type": "string", "pattern": DURATION},
                                "honorLabels": {"type": "boolean"},
                                "relabelings": {"type": "array"},
                                "metricRelabelings": {"type": "array"},
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": {"type": "string", "pattern": DURATION},
                                "limit": {"type": "integer"},
                                "partial_response_strategy": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "oneOf": [
                                            {"required": ["record"]},
                                            {"required": ["alert"]},
                                        ],
                                        "properties": {
                                            "record": {"type": "string"},
                                            "alert": {"type": "string"},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": {"type": "string", "pattern": DURATION},
                                            "keep_firing_for": {
                                                "type": "string",
                                                "pattern": DURATION,
                                            },
                                            "labels": LABELS,
                                            "annotations": LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def kustomization(folder: Path) -> dict[str, Any]:
    return load(folder / "kustomization.yaml")


def generated_configmaps() -> dict[str, dict[str, Any]]:
    """The ConfigMaps deploy/monitoring's configMapGenerator makes, as kustomize makes them."""
    kz = kustomization(MONITORING)
    common = {k: v for entry in kz.get("labels", []) for k, v in entry["pairs"].items()}
    assert kz["generatorOptions"]["disableNameSuffixHash"] is True  # stable names to mount
    maps = {}
    for gen in kz["configMapGenerator"]:
        data = {}
        for spec in gen["files"]:
            key, _, name = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
            data[key] = (MONITORING / name).read_text()
        labels = {**common, **gen.get("options", {}).get("labels", {})}
        maps[gen["name"]] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": gen["name"], "labels": labels},
            "data": data,
        }
    return maps


def custom_resources() -> dict[str, dict[str, Any]]:
    docs = {}
    for name in kustomization(OPERATOR)["resources"]:
        doc = load(OPERATOR / name)
        docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_configmaps_are_valid_kubernetes(version: str) -> None:
    maps = generated_configmaps()
    assert set(maps) == {"fmnist-prometheus", "fmnist-grafana-dashboard"}
    for name, doc in maps.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"ConfigMap {name} is not valid Kubernetes {version}: {exc.message}")
        assert sum(len(v.encode()) for v in doc["data"].values()) < CONFIGMAP_LIMIT
    assert (
        maps["fmnist-prometheus"]["data"]["rules.yaml"] == (MONITORING / "rules.yaml").read_text()
    )
    assert maps["fmnist-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    json.loads(maps["fmnist-grafana-dashboard"]["data"]["fmnist-service.json"])


def test_custom_resources_match_the_operators_fields() -> None:
    docs = custom_resources()
    assert set(docs) == {"ServiceMonitor", "PrometheusRule"}
    for kind, doc in docs.items():
        jsonschema.validate(doc, SCHEMAS[kind])


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ServiceMonitor", ("spec", "endpoints", 0, "port"), 3000),  # must be the port's name
        ("ServiceMonitor", ("spec", "endpoints", 0, "interval"), "15 seconds"),
        ("ServiceMonitor", ("spec", "selectr"), {}),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "exprr"), "up"),
        ("PrometheusRule", ("spec", "groups", 2, "rules", 0, "for"), "2 minutes"),
        ("PrometheusRule", ("spec", "groups", 2, "rules", 0, "record"), "both"),
    ],
)
def test_a_broken_custom_resource_is_caught(kind: str, path: tuple[Any, ...], value: Any) -> None:
    doc = custom_resources()[kind]
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMAS[kind])


def test_prometheus_rule_groups_are_rules_yaml_byte_for_byte() -> None:
    rules_text = (MONITORING / "rules.yaml").read_text()
    text = (OPERATOR / "prometheusrule.yaml").read_text()
    spec = text.split("\nspec:\n", 1)[1]
    dedented = "".join(line[2:] if line.strip() else line for line in spec.splitlines(True))
    assert dedented == rules_text[rules_text.index("\ngroups:") + 1 :]
    assert (
        load(OPERATOR / "prometheusrule.yaml")["spec"]["groups"]
        == load(MONITORING / "rules.yaml")["groups"]
    )
    done = subprocess.run(
        ["python", str(REPO / "scripts" / "monitoring_manifests.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_service_monitor_scrapes_the_service_as_the_rules_expect() -> None:
    monitor = custom_resources()["ServiceMonitor"]
    service = load(K8S / "service.yaml")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    # The operator names the job after the Service unless jobLabel says otherwise.
    assert "jobLabel" not in monitor["spec"] and service["metadata"]["name"] == JOB
    assert f'up{{job="{JOB}"}}' in (MONITORING / "rules.yaml").read_text()


def test_plain_prometheus_config(tmp_path: Path) -> None:
    config = load(MONITORING / "prometheus.yaml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB and job["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["rules.yaml"]  # beside it, in the same ConfigMap
    assert set(generated_configmaps()["fmnist-prometheus"]["data"]) == {
        "prometheus.yaml",
        "rules.yaml",
    }
    # The keep rule matches the pods of deploy/k8s/deployment.yaml.
    pod_labels = load(K8S / "deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep"
    # Prometheus' meta label of a pod label: the name with every other character as "_".
    meta = {
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
        for k, v in pod_labels.items()
    }
    assert re.fullmatch(keep["regex"], meta[keep["source_labels"][0]])
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.skip("promtool is not installed")
    # Debian's Prometheus is built without the Kubernetes service discovery: check the rest
    # of the file with a static target in its place.
    job["static_configs"] = [{"targets": ["127.0.0.1:3000"]}]
    del job["kubernetes_sd_configs"]
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(MONITORING / "rules.yaml", tmp_path / "rules.yaml")
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not here")
def test_kustomize_builds_what_these_tests_validate() -> None:
    def build(folder: Path) -> list[dict[str, Any]]:
        done = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    built = {d["metadata"]["name"]: d for d in build(MONITORING)}
    assert built == generated_configmaps()
    operator = {d["kind"]: d for d in build(OPERATOR)}
    assert set(operator) == {"ServiceMonitor", "PrometheusRule"}
    for kind, doc in operator.items():
        jsonschema.validate(doc, SCHEMAS[kind])
        assert doc["spec"] == custom_resources()[kind]["spec"]


def test_dashboard_is_grafana_json_over_the_rules_and_metrics() -> None:
    from loadtests.monitoring import dashboard_queries, load_dashboard

    dashboard = load_dashboard()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "model"}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["targets"]
    queries = dashboard_queries(dashboard, rate_interval="1m", range_="1h")
    rules_text = (MONITORING / "rules.yaml").read_text()
    recorded = set(re.findall(r"record: (\S+)", rules_text))
    used = {name for q in queries for name in re.findall(r"\bfmnist:[\w:]+", q.expr)}
    assert used and used <= recorded, used - recorded
    for needed in ("fmnist_queue_seconds", "fmnist_inference_seconds", "fmnist_worker_requests"):
        assert any(needed in q.expr for q in queries), needed
