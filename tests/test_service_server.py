"""Against a real ``bentoml serve`` (2 workers, fixture models, 127.0.0.1, free port).

One server per module: every bad input from issue #3 gets its 4xx and message, the server
stays up and still answers a good request, and /metrics (merged over both workers) shows
exactly what known requests did. A second test builds a Bento from the model store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fmnist.contract import file_sha256
from fmnist.dataset import CLASS_NAMES as FASHION_CLASSES
from fmnist.prometheus import metric_samples, metric_total
from loadtests.launch import REPO_ROOT, bentoml_server
from tests.payloads import GOOD_IMAGE, ONE, bad_inputs, encode, npy

pytestmark = pytest.mark.slow

MAX_BATCH = 16
MAX_BODY = 200_000
CLASS_NAMES = list(FASHION_CLASSES)


@pytest.fixture(scope="module")
def server(onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {
        "FMNIST_MODEL_DIR": str(onnx_models["baseline"].parent),
        "FMNIST_WORKERS": "2",
        "FMNIST_MAX_BATCH_SIZE": str(MAX_BATCH),
        "FMNIST_MAX_BODY_BYTES": str(MAX_BODY),
        "BENTOML_HOME": str(home),
    }
    with bentoml_server(env, log_path=home / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


png = encode
# What a real server adds to tests/test_http_api.py's table: the answers pass through
# BentoML's server and middleware unchanged, and the server stays up.
ON_A_REAL_SERVER = {
    "corrupt image",
    "gif raw body",
    "invalid JSON",
    "batch over limit (npy)",
    "body over limit",
    "unknown model /classify_batch",
}
BAD_INPUTS = [case for case in bad_inputs(MAX_BATCH, MAX_BODY) if case[0] in ON_A_REAL_SERVER]


def test_every_bad_input_gets_a_clear_4xx_and_the_server_stays_up(client: httpx.Client) -> None:
    failures = []
    for name, path, kwargs, status, reason, words in BAD_INPUTS:
        resp = client.post(path, **kwargs)
        body = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if (resp.status_code, body.get("error")) != (status, reason) or words not in body.get(
            "detail", ""
        ):
            failures.append(
                f"{name}: got {resp.status_code} {resp.text[:200]!r}, "
                f"expected {status} {reason} mentioning {words!r}"
            )
    assert not failures, "\n".join(failures)
    wrong_method = client.get("/classify")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    # Still up, still right.
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    good = client.post(
        "/classify",
        files={"image": ("x.png", GOOD_IMAGE, "image/png")},
        data={"model": "deeper", "invert": "true"},
    )
    assert good.status_code == 200, good.text
    answer = good.json()
    assert (
        answer["model"] == "deeper" and answer["class_name"] == CLASS_NAMES[answer["class_index"]]
    )
    assert list(answer["probabilities"]) == CLASS_NAMES
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["confidence"] == max(answer["probabilities"].values())


def test_batch_endpoints_agree_with_in_process_onnxruntime(
    client: httpx.Client, onnx_models: dict[str, Path]
) -> None:
    import onnxruntime as ort

    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = ort.InferenceSession(str(onnx_models["deeper"])).run(
        ["probabilities"], {"pixels": images[:, None].astype(np.float32)}
    )[0]
    by_json = client.post("/classify_batch", json={"pixels": images.tolist(), "model": "deeper"})
    by_npy = client.post(
        "/classify_npy", files={"array": ("a.npy", npy(images), "x")}, data={"model": "deeper"}
    )
    for resp in (by_json, by_npy):
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["model"] == "deeper" and doc["count"] == 5 and doc["class_names"] == CLASS_NAMES
        np.testing.assert_allclose(doc["probabilities"], expected, atol=1e-6)
        assert doc["class_index"] == expected.argmax(1).tolist()
    single = client.post(
        "/classify",
        files={"image": ("x.png", png(images[0]), "image/png")},
        data={"model": "deeper"},
    ).json()
    np.testing.assert_allclose(list(single["probabilities"].values()), expected[0], atol=1e-6)


def test_raw_image_body_answers_like_the_form(client: httpx.Client) -> None:
    raw = client.post(
        "/classify?model=deeper&invert=true",
        content=GOOD_IMAGE,
        headers={"content-type": "image/png"},
    )
    form = client.post(
        "/classify",
        files={"image": ("x.png", GOOD_IMAGE, "image/png")},
        data={"model": "deeper", "invert": "true"},
    )
    assert raw.status_code == form.status_code == 200, raw.text
    assert raw.json() == form.json()


PUBLIC_PATHS = {
    "/classify",
    "/classify_batch",
    "/classify_npy",
    "/models",
    "/livez",
    "/readyz",
    "/healthz",
    "/metrics",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/versions/{version}/infer",
}


def test_docs_json_lists_every_public_path(
    client: httpx.Client, onnx_models: dict[str, Path]
) -> None:
    """BentoML's Swagger UI at / reads /docs.json: the app's document, not BentoML's."""
    spec = client.get("/docs.json").json()
    assert set(spec["paths"]) == PUBLIC_PATHS
    assert spec["info"]["title"] == "Fashion-MNIST classifier"
    for name, path in onnx_models.items():
        assert f"{name} {file_sha256(path)[:12]}" in spec["info"]["version"]
        assert file_sha256(path) in spec["info"]["description"]
    for path, item in spec["paths"].items():
        for op in item.values():
            assert "200" in op["responses"], path
            if path.startswith("/classify") or path.endswith("/infer"):
                assert op["requestBody"]["content"], path
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/livez").status_code == 200  # BentoML's probes are still BentoML's


def test_models_listing(client: httpx.Client, onnx_models: dict[str, Path]) -> None:
    doc = client.get("/models").json()
    assert doc["default"] == "baseline"
    assert [m["name"] for m in doc["models"]] == ["baseline", "deeper"]
    for m in doc["models"]:
        assert m["sha256"] == file_sha256(onnx_models[m["name"]])
        assert m["opset"] == 18 and m["parameters"] > 10_000 and m["test_accuracy"] == 0.1
        assert m["input"]["shape"] == ["N", 1, 28, 28]
        assert m["metadata"]["class_names"] == CLASS_NAMES


def readme_commands() -> list[str]:
    """The shell commands of the README's curl block, continuation lines joined."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("another shell in the repository:\n\n```bash\n", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def test_readme_curl_examples_run_as_written(server: str, tmp_path: Path) -> None:
    """Every command of the README's serving block, in a folder laid out like the repo."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for name in ("docs", "README.md", ".venv"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    commands = readme_commands()
    assert sum(c.startswith("curl") for c in commands) >= 9
    host = server.removeprefix("http://")
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command.replace("localhost:3000", host)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        if command.startswith("curl"):
            assert done.stdout.strip(), command
            assert "internal_error" not in done.stdout, command
            if done.stdout.startswith("{"):
                json.loads(done.stdout.split("\n", 1)[0])
    assert (tmp_path / "batch.npy").is_file()


def scrape(client: httpx.Client) -> str:
    return client.get("/metrics").text


total = metric_total  # of one scrape's text


def test_metrics_after_known_requests(client: httpx.Client, onnx_models: dict[str, Path]) -> None:
    before = scrape(client)
    rng = np.random.default_rng(1)
    sizes = [3, 7, 1, 5]  # four batch calls on the deeper model, 16 images
    predicted: list[int] = []
    confidences: list[float] = []
    for n in sizes:
        resp = client.post(
            "/classify_npy",
            data={"model": "deeper"},
            files={"array": ("a.npy", npy(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), "x")},
        )
        assert resp.status_code == 200
        predicted += resp.json()["class_index"]
        confidences += resp.json()["confidence"]
    for _ in range(3):
        assert (
            client.post("/classify_batch", json={"pixels": [], "model": "deeper"}).status_code
            == 400
        )
    assert client.post("/classify_batch", json={"pixels": [ONE], "model": "x"}).status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("fmnist_predictions_total", model="deeper") == sum(sizes)
    for index in set(predicted):
        assert delta(
            "fmnist_predictions_total", model="deeper", class_name=CLASS_NAMES[index]
        ) == predicted.count(index)
    assert delta("fmnist_inference_batch_size_count", model="deeper") == len(sizes)
    assert delta("fmnist_inference_batch_size_sum", model="deeper") == sum(sizes)
    assert delta("fmnist_inference_seconds_count", model="deeper") == len(sizes)
    assert 0 < delta("fmnist_inference_seconds_sum", model="deeper") < 5
    assert delta("fmnist_prediction_confidence_count", model="deeper") == sum(sizes)
    assert delta("fmnist_prediction_confidence_sum", model="deeper") == pytest.approx(
        sum(confidences), rel=1e-5
    )
    assert delta("fmnist_queue_seconds_count", model="deeper") == len(sizes)
    assert 0 <= delta("fmnist_queue_seconds_sum", model="deeper") < 5
    # Every request counted once, by the worker that answered it.
    assert delta("fmnist_worker_requests_total") == len(sizes) + 3 + 1
    assert delta("fmnist_shed_requests_total") == 0
    assert delta("fmnist_rejected_requests_total", reason="empty_batch") == 3
    assert delta("fmnist_rejected_requests_total", reason="unknown_model") == 1
    assert delta("fmnist_predictions_total", model="baseline") == 0
    # One info series per model (value 1 even with two workers), labelled with the file hash.
    samples = metric_samples(after)
    for name in ("baseline", "deeper"):
        info = [s for s in samples if s.name == "fmnist_model_info" and s.labels["model"] == name]
        assert [s.value for s in info] == [1.0]
        assert info[0].labels["sha256"] == file_sha256(onnx_models[name])
    # BentoML's own request metrics are there too.
    assert any(s.name.startswith("bentoml_") for s in samples)


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_bentoml_build_packs_both_models_and_no_torch(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    env = {
        "BENTOML_HOME": str(tmp_path / "home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "FMNIST_MODEL_DIR": "",
    }
    onnx_dir = str(onnx_models["baseline"].parent)
    run([sys.executable, "-m", "service.import_models", "--onnx-dir", onnx_dir], env)
    run([sys.executable, "-m", "bentoml", "build", "--output", "tag"], env)
    bentos = list((tmp_path / "home" / "bentos" / "fmnist").glob("*/bento.yaml"))
    assert len(bentos) == 1
    bento = bentos[0].parent
    info = bentos[0].read_text()
    import yaml

    doc = yaml.safe_load(info)
    assert doc["service"] == "service.service:FashionMNISTService"
    tags = {m["tag"].split(":")[0] for svc in doc["services"] for m in svc["models"]}
    assert tags == {"fmnist-baseline", "fmnist-deeper"}
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().lower()
    assert "onnxruntime" in requirements and "bentoml" in requirements
    for banned in ("torch", "torchvision", "nvidia-", "cuda"):
        assert banned not in requirements, f"{banned} in the Bento's requirements"
    assert (bento / "src" / "service" / "service.py").is_file()
    assert (bento / "src" / "fmnist" / "dataset.py").is_file()
    assert not (bento / "src" / "loadtests").exists()  # the harness (launch.py) stays out
    # The store path works end to end: serve the built Bento and classify one image.
    with bentoml_server({**env}, target="fmnist:latest", log_path=tmp_path / "serve.log") as url:
        listing = httpx.get(url + "/models", timeout=30).json()
        assert {m["sha256"] for m in listing["models"]} == {
            file_sha256(onnx_models["baseline"]),
            file_sha256(onnx_models["deeper"]),
        }
        resp = httpx.post(
            url + "/classify", timeout=30, files={"image": ("x.png", GOOD_IMAGE, "image/png")}
        )
        assert resp.status_code == 200 and json.loads(resp.text)["model"] == "baseline"
