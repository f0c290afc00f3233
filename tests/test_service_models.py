"""Which models the service serves: baseline and deeper always, improved when present.

From FMNIST_MODEL_DIR (settings, then a real ``bentoml serve`` of three models) and from
the BentoML model store (``import_models`` and the class-level references that
``bentoml build`` packs).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.launch import REPO_ROOT, bentoml_server
from service.onnx_file import file_sha256
from service.settings import ServiceSettings, SettingsError


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.onnx").write_bytes(b"")
    return folder


def test_model_dir_serves_the_required_models_and_improved_when_present(tmp_path: Path) -> None:
    two = ServiceSettings(model_dir=touch(tmp_path / "two", "baseline", "deeper"))
    assert two.models_in_dir() == ("baseline", "deeper")
    three = ServiceSettings(model_dir=touch(tmp_path / "three", "improved", "deeper", "baseline"))
    assert three.models_in_dir() == ("baseline", "deeper", "improved")
    lacking = ServiceSettings(model_dir=touch(tmp_path / "lacking", "baseline", "improved"))
    with pytest.raises(SettingsError, match=r"lacks deeper\.onnx"):
        lacking.models_in_dir()


def test_default_model_must_be_served() -> None:
    settings = ServiceSettings.from_env({"FMNIST_DEFAULT_MODEL": "improved"})
    settings.check_default_served(("baseline", "deeper", "improved"), "x")
    with pytest.raises(SettingsError, match="'improved' is not served: FMNIST_MODEL_DIR=/m"):
        settings.check_default_served(("baseline", "deeper"), "FMNIST_MODEL_DIR=/m")
    with pytest.raises(SettingsError, match="expected one of baseline, deeper, improved"):
        ServiceSettings.from_env({"FMNIST_DEFAULT_MODEL": "resnet"})


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def metric_total(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.slow
def test_a_third_model_is_served_listed_and_counted(
    onnx_models_three: dict[str, Path], tmp_path: Path
) -> None:
    import onnxruntime as ort

    env = {
        "FMNIST_MODEL_DIR": str(onnx_models_three["improved"].parent),
        "FMNIST_DEFAULT_MODEL": "improved",
        "FMNIST_WORKERS": "1",
        "BENTOML_HOME": str(tmp_path / "home"),
    }
    images = np.random.default_rng(3).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    expected = ort.InferenceSession(str(onnx_models_three["improved"])).run(
        ["probabilities"], {"pixels": images[:, None].astype(np.float32)}
    )[0]
    with (
        bentoml_server(env, log_path=tmp_path / "serve.log") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        listing = client.get("/models").json()
        assert listing["default"] == "improved"
        assert [m["name"] for m in listing["models"]] == ["baseline", "deeper", "improved"]
        improved = listing["models"][2]
        assert improved["sha256"] == file_sha256(onnx_models_three["improved"])
        assert improved["metadata"]["temperature"] == "1.5"
        assert improved["metadata"]["weights"] == "best"
        # The default model (no "model" field) is improved, on every endpoint.
        batch = client.post("/classify_npy", files={"array": ("a.npy", npy(images), "x")})
        assert batch.status_code == 200, batch.text
        assert batch.json()["model"] == "improved"
        np.testing.assert_allclose(batch.json()["probabilities"], expected, atol=1e-6)
        by_json = client.post("/classify_batch", json={"pixels": images.tolist()}).json()
        assert by_json["class_index"] == expected.argmax(1).tolist()
        single = client.post(
            "/classify", files={"image": ("x.png", png(images[0]), "image/png")}
        ).json()
        assert single["model"] == "improved"
        np.testing.assert_allclose(list(single["probabilities"].values()), expected[0], atol=1e-6)
        unknown = client.post("/classify_batch", json={"pixels": images.tolist(), "model": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_model"
        assert "expected one of baseline, deeper, improved" in unknown.json()["detail"]
        metrics = client.get("/metrics").text
    assert metric_total(metrics, "fmnist_predictions_total", model="improved") == 4 + 4 + 1
    assert metric_total(metrics, "fmnist_inference_batch_size_count", model="improved") == 3
    assert metric_total(metrics, "fmnist_model_info", model="improved") == 1


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


# What the service module declares for `bentoml build`: the served names, the store refs.
DECLARED = (
    "import json, service.service as s; "
    "print(json.dumps([list(s.SERVED_MODELS), "
    "sorted(str(m.tag) for m in s.FashionMNISTService.models)]))"
)


@pytest.mark.slow
def test_import_models_imports_every_model_present_and_the_service_references_them(
    onnx_models: dict[str, Path], onnx_models_three: dict[str, Path], tmp_path: Path
) -> None:
    env = {"BENTOML_HOME": str(tmp_path / "home"), "FMNIST_MODEL_DIR": ""}
    two_dir = str(onnx_models["baseline"].parent)
    out = run(["-m", "service.import_models", "--onnx-dir", two_dir], env)
    assert [line.split(":")[0] for line in out.splitlines()] == ["baseline", "deeper"]
    served, refs = json.loads(run(["-c", DECLARED], env))
    assert served == ["baseline", "deeper"]
    assert refs == ["fmnist-baseline:latest", "fmnist-deeper:latest"]

    three_dir = str(onnx_models_three["improved"].parent)
    out = run(["-m", "service.import_models", "--onnx-dir", three_dir], env)
    assert [line.split(":")[0] for line in out.splitlines()] == ["baseline", "deeper", "improved"]
    served, refs = json.loads(run(["-c", DECLARED], env))
    assert served == ["baseline", "deeper", "improved"]
    assert refs == ["fmnist-baseline:latest", "fmnist-deeper:latest", "fmnist-improved:latest"]


def test_import_models_needs_the_required_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import import_models

    folder = touch(tmp_path / "onnx", "baseline", "improved")
    assert import_models.models_to_import(folder, None) == (
        ["baseline", "deeper", "improved"],
        ["deeper"],
    )
    assert import_models.main(["--onnx-dir", str(folder)]) == 2
    assert "lacks deeper.onnx" in capsys.readouterr().err
    assert import_models.models_to_import(folder, ["improved"]) == (["improved"], [])
