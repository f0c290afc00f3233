"""Shipping the next model, against a real ``bentoml serve`` (2 workers, 127.0.0.1).

Three versions of ``baseline`` made here on the synthetic data: ``trained`` (production),
``weak`` (a few steps of training: the worse candidate) and ``equal`` (trained's weights
exported again with other metadata: another file, the same answers). Every version is
served side by side; shadow counters and the capture move as the traffic says; the gate
rejects ``weak``, promotes ``equal`` and is undecided on a dead service; promotion and
rollback under keep-alive load and SIGTERM under load lose no request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fmnist.contract import file_sha256
from fmnist.dataset import CLASS_NAMES
from fmnist.prometheus import metric_total
from loadtests.launch import REPO_ROOT, bentoml_server, free_port, wait_ready
from loadtests.rollout import KeepAliveLoad
from service.promote import main as promote
from service.promote import rollback_main as rollback
from service.versions import read_aliases, write_aliases
from tests.conftest import make_images

pytestmark = pytest.mark.slow

CAPTURE_BOUND = 64 * 1024  # the smallest FMNIST_CAPTURE_MAX_BYTES, both workers together


def train(steps: int, seed: int) -> object:
    """baseline after ``steps`` Adam steps on synthetic images (learnable in ~100 steps)."""
    import torch

    from training.data import scale_pixels
    from training.models import build_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_model("baseline")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        labels = rng.integers(0, 10, 64)
        x = scale_pixels(make_images(labels, int(rng.integers(1 << 30))))  # (B, 1, 28, 28)
        loss = torch.nn.functional.cross_entropy(net(x), torch.as_tensor(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """trained, weak, equal → their versions; the folder is ``versions["dir"]``."""
    pytest.importorskip("torch")
    from training.export import export_onnx

    folder = tmp_path_factory.mktemp("versions")
    trained, weak = train(150, 0), train(2, 1)
    meta = {"model_name": "baseline", "class_names": list(CLASS_NAMES), "code_revision": "t"}
    out = {"dir": str(folder)}
    for label, net, revision in (
        ("trained", trained, "t"),
        ("weak", weak, "t"),
        ("equal", trained, "again"),
    ):
        path = export_onnx(
            net, folder / f"baseline-{label}.onnx", {**meta, "code_revision": revision}
        )  # type: ignore[arg-type]
        out[label] = file_sha256(path)[:12]
    write_aliases(
        folder / "aliases.json",
        {"baseline": {"production": out["trained"], "candidate": out["weak"]}},
    )
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.fixture(scope="module")
def server(versions: dict[str, str], home: Path) -> Iterator[str]:
    env = {
        "FMNIST_MODEL_DIR": versions["dir"],
        "FMNIST_WORKERS": "2",
        "FMNIST_ALIASES_POLL_S": "0.2",
        "FMNIST_CAPTURE_DIR": str(home / "capture"),
        "FMNIST_CAPTURE_MAX_BYTES": str(CAPTURE_BOUND),
        "BENTOML_HOME": str(home),
    }
    with bentoml_server(env, log_path=home / "serve.log") as url:
        yield url


def samples(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``, over all workers."""
    return metric_total(httpx.get(f"{url}/metrics", timeout=10).text, name, **labels)


def npy_body(images: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, images)
    return buf.getvalue()


def classify(url: str, images: np.ndarray, model: str | None) -> dict:
    params = {"model": model} if model else {}
    r = httpx.post(
        f"{url}/classify_npy",
        params=params,
        content=npy_body(images),
        headers={"content-type": "application/x-npy"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(condition, timeout: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def set_aliases(folder: str, **aliases: str) -> None:
    write_aliases(Path(folder) / "aliases.json", {"baseline": aliases})


def production_everywhere(url: str, version: str) -> bool:
    """Every worker answers a plain request with ``version`` (20 fresh connections)."""
    for _ in range(20):
        with httpx.Client(base_url=url, timeout=10) as c:  # a new connection each: both workers
            if c.get("/models").json()["aliases"]["baseline"]["production"] != version:
                return False
    return True


def test_versions_are_served_side_by_side_in_every_api(
    server: str, versions: dict[str, str]
) -> None:
    listing = httpx.get(f"{server}/models").json()
    assert listing["aliases"] == {
        "baseline": {"production": versions["trained"], "candidate": versions["weak"]}
    }
    listed = [(m["name"], m["version"], m["aliases"]) for m in listing["models"]]
    assert listed[0] == ("baseline", versions["trained"], ["production"])
    assert sorted(listed[1:]) == sorted(
        [("baseline", versions["weak"], ["candidate"]), ("baseline", versions["equal"], [])]
    )
    images = make_images(np.arange(20) % 10, 7)
    plain = classify(server, images, None)
    assert plain["version"] == versions["trained"]
    assert classify(server, images, "baseline@candidate")["version"] == versions["weak"]
    by_version = classify(server, images, f"baseline@{versions['equal']}")
    assert by_version["version"] == versions["equal"]
    assert by_version["class_index"] == plain["class_index"]  # same weights, same answers
    v2 = httpx.get(f"{server}/v2/models/baseline").json()
    assert sorted(v2["versions"]) == sorted(versions[k] for k in ("trained", "weak", "equal"))
    infer = httpx.post(
        f"{server}/v2/models/baseline/versions/candidate/infer",
        json={
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": [1, 28, 28],
                    "data": images[0].ravel().tolist(),
                }
            ]
        },
    ).json()
    assert infer["model_version"] == versions["weak"]
    missing = httpx.post(
        f"{server}/classify_npy?model=baseline@ffffffffffff",
        content=npy_body(images),
        headers={"content-type": "application/x-npy"},
    )
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_model"
    assert samples(server, "fmnist_model_alias", alias="candidate", version=versions["weak"]) == 1


def test_the_demo_page_shows_every_version_side_by_side(
    server: str, versions: dict[str, str]
) -> None:
    """/ui asks each served version by what a request names it: baseline (production),
    baseline@candidate, baseline@<version>; each card shows that version's own answer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests import browser

    expected = ["baseline", "baseline@candidate", f"baseline@{versions['equal']}"]
    with browser.chromium(browser.DESKTOP) as driver:
        driver.get(server + "/ui")
        WebDriverWait(driver, 30).until(
            lambda d: (
                sorted(
                    c.get_attribute("data-model") for c in d.find_elements(By.CSS_SELECTOR, ".card")
                )
                == sorted(expected)
            )
        )
        driver.find_element(By.CSS_SELECTOR, ".example").click()
        WebDriverWait(driver, 30).until(
            lambda d: all(
                c.get_attribute("data-state") == "done"
                for c in d.find_elements(By.CSS_SELECTOR, ".card")
            )
        )
        for reference in expected:
            card = driver.find_element(By.CSS_SELECTOR, f'.card[data-model="{reference}"]')
            version = versions["weak"] if reference.endswith("candidate") else reference[-12:]
            if reference == "baseline":
                version = versions["trained"]
            assert f"version {version}" in card.find_element(By.CSS_SELECTOR, ".facts").text


def test_shadow_counters_move_as_the_traffic_says(server: str, versions: dict[str, str]) -> None:
    weak = versions["weak"]
    before = samples(server, "fmnist_shadow_predictions_total", candidate=weak)
    images = make_images(np.arange(40) % 10, 11)
    classify(server, images, None)  # production: shadowed
    classify(server, images, "baseline@candidate")  # the candidate itself: not shadowed
    classify(server, images, f"baseline@{versions['trained']}")  # an explicit version: not
    assert wait_for(
        lambda: samples(server, "fmnist_shadow_predictions_total", candidate=weak) - before == 40
    )
    time.sleep(0.5)
    assert samples(server, "fmnist_shadow_predictions_total", candidate=weak) - before == 40
    disagree = samples(
        server, "fmnist_shadow_predictions_total", candidate=weak, agreement="disagree"
    )
    assert disagree > 0  # a few steps of training disagree with a trained model
    assert samples(server, "fmnist_shadow_inference_seconds_count", model="baseline") > 0


def test_the_capture_never_passes_its_bound(server: str, home: Path) -> None:
    shadowed = samples(server, "fmnist_shadow_predictions_total")
    for seed in range(10):  # 1,000 images, each request's shadow done before the next
        classify(server, make_images(np.arange(100) % 10, 100 + seed), None)
        shadowed += 100
        assert wait_for(
            lambda at_least=shadowed: samples(server, "fmnist_shadow_predictions_total") >= at_least
        )
    written = -1.0
    while written != samples(server, "fmnist_shadow_captured_total"):  # the last writes done
        written = samples(server, "fmnist_shadow_captured_total")
        time.sleep(0.5)
    files = [p for p in (home / "capture").rglob("*") if p.is_file()]
    assert written > len(files) > 0  # more were written than kept: the oldest went
    assert sum(p.stat().st_size for p in files) <= CAPTURE_BOUND
    assert not [p for p in files if p.name.startswith(".")]  # no half-written file
    with np.load(sorted(files)[-1]) as npz:
        assert npz["image"].shape == (28, 28) and str(npz["model"]) == "baseline"
        assert npz["production"].shape == (10,) and npz["candidate"].shape == (10,)


def gate(url: str, data_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "evaluation.cli", "--url", url, "--out", str(out),
            "--data-dir", str(data_dir), "--skip-checksums", "--no-progress",
            "--onnx-dir", str(out.parent / "none"), "--gate", "baseline",
            "--min-images", "100", "--retry-for", "3", *extra,
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_the_gate_rejects_a_worse_candidate_and_promotes_an_equal_one(
    server: str, versions: dict[str, str], synthetic_data_dir: Path, tmp_path: Path
) -> None:
    worse = gate(server, synthetic_data_dir, tmp_path / "worse")
    assert worse.returncode == 1, worse.stderr + worse.stdout
    assert "gate baseline: reject" in worse.stdout and "accuracy non-inferior" in worse.stdout
    report = (tmp_path / "worse" / "report.md").read_text()
    assert "## Gate" in report and "**Verdict: reject**" in report
    decided = json.loads((tmp_path / "worse" / "metrics.json").read_text())["gate"]
    assert (decided["verdict"], decided["candidate"]) == ("reject", versions["weak"])

    set_aliases(versions["dir"], production=versions["trained"], candidate=versions["equal"])
    assert wait_for(lambda: all(
        httpx.get(f"{server}/models").json()["aliases"]["baseline"].get("candidate")
        == versions["equal"] for _ in range(10)
    ))  # fmt: skip
    equal = gate(server, synthetic_data_dir, tmp_path / "equal")
    assert equal.returncode == 0, equal.stderr + equal.stdout
    assert "gate baseline: promote" in equal.stdout


def test_the_gate_is_undecided_on_a_dead_service_or_too_few_images(
    server: str, dead_url: str, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    dead = gate(dead_url, synthetic_data_dir, tmp_path / "dead")
    assert dead.returncode == 2 and "undecided" in dead.stderr
    few = gate(server, synthetic_data_dir, tmp_path / "few", "--limit", "50")
    assert few.returncode == 2 and "fewer than the 100" in few.stdout


def test_promotion_and_rollback_under_load_lose_no_request(
    server: str, versions: dict[str, str]
) -> None:
    trained, equal = versions["trained"], versions["equal"]
    set_aliases(versions["dir"], production=trained)
    assert wait_for(lambda: production_everywhere(server, trained))
    folder = ["--model-dir", versions["dir"]]
    with KeepAliveLoad(server, clients=8) as load:
        time.sleep(1.5)
        assert promote([f"baseline@{equal}", *folder]) == 0
        assert wait_for(lambda: production_everywhere(server, equal))
        time.sleep(1.0)
        assert rollback(["baseline", *folder]) == 0
        assert wait_for(lambda: production_everywhere(server, trained))
        time.sleep(1.0)
    result = load.result
    assert result.cut == 0 and result.non_2xx == 0 and result.refused == 0, result.summary()
    assert result.versions[trained] > 100 and result.versions[equal] > 100, result.summary()
    assert read_aliases(Path(versions["dir"]) / "aliases.json")["baseline"] == {
        "production": trained,
        "previous": equal,
    }


def test_an_aliases_file_that_cannot_be_applied_keeps_the_old_aliases_serving(
    server: str, versions: dict[str, str]
) -> None:
    trained = versions["trained"]
    set_aliases(versions["dir"], production=trained)
    assert wait_for(lambda: production_everywhere(server, trained))
    rejected = samples(server, "fmnist_aliases_reloads_total", result="rejected")
    path = Path(versions["dir"]) / "aliases.json"
    path.write_text('{"baseline": {"production": "ffffffffffff"}}')  # no such version
    assert wait_for(
        lambda: samples(server, "fmnist_aliases_reloads_total", result="rejected") >= rejected + 2
    )  # both workers refused it
    path.write_text("{half a file")
    assert wait_for(
        lambda: samples(server, "fmnist_aliases_reloads_total", result="rejected") >= rejected + 4
    )
    assert production_everywhere(server, trained)
    assert classify(server, make_images(np.arange(4), 3), None)["version"] == trained
    set_aliases(versions["dir"], production=trained)


def test_sigterm_under_load_cuts_no_request(versions: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FMNIST_MODEL_DIR": versions["dir"],
        "FMNIST_WORKERS": "2",
        "FMNIST_DRAIN_S": "3",
        "FMNIST_DRAIN_QUIET_S": "2",
        "BENTOML_HOME": str(tmp_path),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service.service:FashionMNISTService",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/readyz", proc, 90)
            with KeepAliveLoad(url, clients=8) as load:
                time.sleep(2)
                answered = load.result.answered
                proc.send_signal(signal.SIGTERM)  # to the server's main process, as Kubernetes
                time.sleep(0.5)
                # Draining: not ready any more, and every answer closes its connection.
                ready = httpx.get(f"{url}/readyz", timeout=10)
                answer = httpx.post(
                    f"{url}/classify_npy",
                    content=npy_body(make_images(np.arange(2), 1)),
                    headers={"content-type": "application/x-npy"},
                    timeout=10,
                )
                code = proc.wait(timeout=60)
            result = load.result
            assert ready.status_code == 503
            assert answer.status_code == 200 and answer.headers["connection"] == "close"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0
    assert result.cut == 0 and result.non_2xx == 0, result.summary()
    assert result.answered > answered  # it kept answering after SIGTERM, while it drained


def test_the_model_store_serves_the_versions_its_aliases_name(
    versions: dict[str, str], tmp_path: Path
) -> None:
    """Two imports of baseline are two store versions; the aliases pick which are served,
    and fmnist-promote checks a store version before it writes."""
    home = tmp_path / "home"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    for label in ("trained", "weak"):
        one = tmp_path / label
        one.mkdir()
        (one / "baseline.onnx").write_bytes(
            (Path(versions["dir"]) / f"baseline-{label}.onnx").read_bytes()
        )
        subprocess.run(
            [sys.executable, "-m", "service.import_models", "--onnx-dir", str(one)],
            env=env, check=True, capture_output=True, cwd=REPO_ROOT,
        )  # fmt: skip
    listed = subprocess.run(
        [sys.executable, "-m", "service.promote", "--show"],
        env={**env, "FMNIST_MODEL_DIR": ""}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    store_versions = re.findall(r"baseline@(\S+)", listed)
    assert len(store_versions) == 2, listed
    old, new = sorted(store_versions, key=lambda v: listed.index(v))
    promote_env = {**env, "FMNIST_MODEL_DIR": ""}
    for argv in ([f"baseline@{old}"], [f"baseline@{new}", "--alias", "candidate"]):
        subprocess.run(
            [sys.executable, "-m", "service.promote", *argv],
            env=promote_env, check=True, capture_output=True, cwd=REPO_ROOT,
        )  # fmt: skip
    assert read_aliases(home / "fmnist-aliases.json") == {
        "baseline": {"production": old, "candidate": new}
    }
    with bentoml_server(
        {"BENTOML_HOME": str(home), "FMNIST_MODEL_DIR": "", "FMNIST_WORKERS": "1"}
    ) as url:
        listing = httpx.get(f"{url}/models").json()
        assert listing["aliases"] == {"baseline": {"production": old, "candidate": new}}
        assert [m["version"] for m in listing["models"]] == [old, new]
        images = make_images(np.arange(10), 5)
        assert classify(url, images, "baseline@candidate")["version"] == new
        assert classify(url, images, None)["version"] == old
