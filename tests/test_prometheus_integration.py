"""The service under a real Prometheus: every dashboard panel returns data, the drift rule
and alert move the way they should.

A real ``bentoml serve`` (2 workers) serves three models: ``baseline`` and ``skewed`` (the
same fixture graph, both carrying a reference: their answers on a pool of synthetic images,
computed and written as fmnist-export does) and ``deeper`` (the fixture as it is, with no
reference: an older export). A real Prometheus scrapes it every second and evaluates the
shipped rules with their windows shortened for a 25-second test (``test_rules``: the same
expressions, only the ``[range]``s and ``for:``s replaced). The load runs in two phases:

1. both ``baseline`` and ``skewed`` get the pool's mix (the "test-set mix");
2. ``baseline`` keeps it, ``skewed`` gets only images of one class (a skewed mix);

with some single images, JSON batches, v2 requests and bad requests throughout.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fmnist.contract import KEY_MODEL_NAME, KEY_REFERENCE, ReferenceDistribution, file_sha256
from fmnist.dataset import CLASS_NAMES
from loadtests.launch import bentoml_server
from loadtests.monitoring import (
    RULES_FILE,
    Prometheus,
    dashboard_queries,
    grafana_rate_interval,
    load_dashboard,
    prometheus_server,
)
from service.versions import write_aliases
from tests.conftest import make_images
from tests.payloads import encode, npy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/bin/prometheus").exists() and shutil.which("prometheus") is None,
        reason="prometheus (Debian package) is not installed",
    ),
]
yaml = pytest.importorskip("yaml")

# The shipped windows, shortened for a test that scrapes and evaluates every second.
TEST_WINDOWS = {"5m": "5s", "10m": "10s", "30m": "10s", "1h": "20s", "6h": "30s"}
TEST_FOR = "2s"
SCRAPE_S = 1.0
PHASE_S = 12.0  # each load phase; longer than the drift window (30m -> 10s)
DRIFT_THRESHOLD = 0.2  # rules.yaml's FmnistPredictionDrift


def test_rules(text: str) -> str:
    """rules.yaml with every range selector and ``for:`` shortened; nothing else changed."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            expr = re.sub(r"\[(\w+)\]", lambda m: f"[{TEST_WINDOWS[m.group(1)]}]", rule["expr"])
            assert "[" not in re.sub(r"\[\d+s\]", "", expr).replace("[^/]", ""), expr
            rule["expr"] = expr
            if "for" in rule:
                rule["for"] = TEST_FOR
    return str(yaml.safe_dump(doc, sort_keys=False))


test_rules.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Served:
    url: str
    log: Path
    reference: ReferenceDistribution
    pool: np.ndarray  # the "test set": its mix is the reference
    skewed: np.ndarray  # pool images the model predicts as one class
    skewed_class: str


def predictions(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(
        session.run(["probabilities"], {"pixels": images[:, None].astype(np.float32)})[0]
    )


@pytest.fixture(scope="module")
def served(
    onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    from training.export import add_metadata, reference_on

    folder = tmp_path_factory.mktemp("onnx-monitoring")
    rng = np.random.default_rng(3)
    pool = np.concatenate(
        [make_images(np.arange(300) % 10, 5), rng.integers(0, 256, (300, 28, 28), np.uint8)]
    )
    baseline = Path(shutil.copy2(onnx_models["baseline"], folder / "baseline.onnx"))
    reference = reference_on(baseline, pool)  # what fmnist-export records
    add_metadata(baseline, {KEY_REFERENCE: reference.to_json()})
    skewed_path = Path(shutil.copy2(baseline, folder / "skewed.onnx"))
    add_metadata(skewed_path, {KEY_MODEL_NAME: "skewed"})
    deeper = Path(shutil.copy2(onnx_models["deeper"], folder / "deeper.onnx"))  # no reference
    # A second version of deeper (the same weights, another file) as its candidate, so that
    # the shadow panels have data: it agrees with production on every image.
    candidate = Path(shutil.copy2(deeper, folder / "deeper-candidate.onnx"))
    add_metadata(candidate, {"code_revision": "candidate"})
    write_aliases(
        folder / "aliases.json",
        {
            "deeper": {
                "production": file_sha256(deeper)[:12],
                "candidate": file_sha256(candidate)[:12],
            }
        },
    )
    # The skew: only images of the least predicted class that the pool predicts at all.
    top = predictions(baseline, pool).argmax(1)
    shares = {c: reference.class_share[CLASS_NAMES[c]] for c in set(top.tolist())}
    assert len(shares) >= 2, f"the fixture model predicts only {shares}: no skew possible"
    rare = min(shares, key=lambda c: shares[c])
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {
        "FMNIST_MODEL_DIR": str(folder),
        "FMNIST_WORKERS": "2",
        "FMNIST_MODELS": "baseline,skewed,deeper",
        "BENTOML_HOME": str(home),
    }
    with bentoml_server(env, log_path=home / "serve.log") as url:
        yield Served(url, home / "serve.log", reference, pool, pool[top == rare], CLASS_NAMES[rare])


def send_batches(url: str, model: str, images: np.ndarray, stop: threading.Event, seed: int) -> int:
    """Shuffled batches of 16 of ``images`` to /classify_npy until ``stop``; images sent."""
    rng = np.random.default_rng(seed)
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            batch = images[rng.choice(len(images), 16, replace=len(images) < 16)]
            resp = client.post(
                "/classify_npy", files={"array": ("a.npy", npy(batch), "x")}, data={"model": model}
            )
            assert resp.status_code == 200, resp.text
            sent += len(batch)
            time.sleep(0.02)
    return sent


def send_mixed(url: str, pool: np.ndarray, stop: threading.Event) -> None:
    """Single images, JSON batches, v2 requests and bad requests, to ``deeper`` mostly."""
    v2 = {"inputs": [{"name": "pixels", "shape": [1, 28, 28], "datatype": "UINT8"}]}
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            image = pool[i % len(pool)]
            i += 1
            ok = [
                client.post(
                    "/classify",
                    files={"image": ("x.png", encode(image), "image/png")},
                    data={"model": "deeper"},
                ),
                client.post(
                    "/classify_batch", json={"pixels": [image.tolist()], "model": "deeper"}
                ),
                client.post(
                    "/v2/models/deeper/infer",
                    json={"inputs": [{**v2["inputs"][0], "data": image.ravel().tolist()}]},
                ),
            ]
            assert [r.status_code for r in ok] == [200, 200, 200], [r.text for r in ok]
            bad = [
                client.post(
                    "/classify_batch",
                    content=b"{oops",
                    headers={"content-type": "application/json"},
                ),
                client.post("/classify_batch", json={"pixels": [image.tolist()], "model": "x"}),
            ]
            assert [r.status_code for r in bad] == [400, 404]
            time.sleep(0.05)


def run_phase(served: Served, skewed_images: np.ndarray, seconds: float) -> dict[str, int]:
    stop = threading.Event()
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str, target: Any, *args: Any) -> None:
        try:
            counts[name] = target(*args) or 0
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(
            target=run,
            args=("baseline", send_batches, served.url, "baseline", served.pool, stop, 1),
        ),
        threading.Thread(
            target=run, args=("skewed", send_batches, served.url, "skewed", skewed_images, stop, 2)
        ),
        threading.Thread(target=run, args=("mixed", send_mixed, served.url, served.pool, stop)),
    ]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return counts


def by_model(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("model", ""): float(r["value"][1]) for r in result}


def firing(prom: Prometheus, alertname: str, at: float) -> set[str]:
    found = prom.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}', at)
    return {r["metric"].get("model", "") for r in found}


@pytest.mark.timeout(240)
def test_dashboard_and_drift_under_a_real_prometheus(served: Served, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(test_rules(RULES_FILE.read_text()))
    host = served.url.removeprefix("http://")
    with prometheus_server([host], [rules], tmp_path / "prometheus") as prom:
        prom.wait_for('up{job="fmnist-service"} == 1')
        # The reference gauges: once per model that carries one (not summed over 2 workers).
        reference = prom.wait_for("fmnist:reference_class_share")
        shares: dict[str, dict[str, float]] = {}
        for r in reference:
            shares.setdefault(r["metric"]["model"], {})[r["metric"]["class_name"]] = float(
                r["value"][1]
            )
        assert set(shares) == {"baseline", "skewed"}  # deeper has no reference
        for model in shares:
            assert shares[model] == pytest.approx(dict(served.reference.class_share), abs=1e-9)

        counts1 = run_phase(served, served.pool, PHASE_S)
        t1 = time.time()
        counts2 = run_phase(served, served.skewed, PHASE_S)
        t2 = time.time()
        time.sleep(2 * SCRAPE_S)  # the last scrape and evaluation of the load

        # Phase 1, the test-set mix on both models: a low score and no drift alert.
        tvd1 = by_model(prom.query("fmnist:predicted_class_tvd:rate30m", t1))
        assert set(tvd1) == {"baseline", "skewed"}, tvd1  # no score without a reference
        assert max(tvd1.values()) < 0.1, (tvd1, counts1)
        assert firing(prom, "FmnistPredictionDrift", t1) == set()
        # Phase 2: the skewed model's score is what one class alone gives (1 - its share on
        # the reference), the alert fires for it and not for the model that kept the mix.
        tvd2 = by_model(prom.query("fmnist:predicted_class_tvd:rate30m", t2))
        expected = 1 - served.reference.class_share[served.skewed_class]
        assert expected > DRIFT_THRESHOLD
        assert tvd2["skewed"] == pytest.approx(expected, abs=0.05), (tvd2, counts2)
        assert tvd2["baseline"] < 0.1, (tvd2, counts2)
        assert firing(prom, "FmnistPredictionDrift", t2) == {"skewed"}
        # Nothing is wrong with the targets or the models meanwhile.
        for healthy in ("FmnistTargetDown", "FmnistModelMissing"):
            assert firing(prom, healthy, t2) == set(), healthy
        live = {
            a["labels"]["model"]
            for a in prom.alerts()
            if a["labels"]["alertname"] == "FmnistPredictionDrift"
        }
        assert live == {"skewed"}

        # Every expression of every panel returns data, as Grafana queries it (model: All).
        empty = []
        queries = dashboard_queries(
            load_dashboard(),
            rate_interval=grafana_rate_interval(1.0, SCRAPE_S),
            range_=f"{int(2 * PHASE_S)}s",
        )
        for query in queries:
            result = prom.query(query.expr, t2 - 1)
            values = [float(r["value"][1]) for r in result]
            if not any(np.isfinite(values)):
                empty.append(f"{query.panel} / {query.legend}: {query.expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert len(queries) >= 20

    log = served.log.read_text(errors="replace")
    warnings = [line for line in log.splitlines() if "fmnist-service: warning" in line]
    # deeper's two versions carry no reference; every other model does
    assert len(warnings) == 2 and all("model deeper" in w for w in warnings), warnings
    print(json.dumps({"tvd_test_set_mix": tvd1, "tvd_skewed_mix": tvd2, "expected": expected}))
