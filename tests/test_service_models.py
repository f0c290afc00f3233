"""Which models the service serves: the exported files it is given, named by their metadata.

From FMNIST_MODEL_DIR (settings, then a real ``bentoml serve`` of three models) and from
the BentoML model store (``import_models`` and the class-level references that
``bentoml build`` packs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.contract import file_sha256
from fmnist.prometheus import metric_total
from loadtests.launch import REPO_ROOT, bentoml_server
from service.catalog import CatalogError, models_in_dir
from service.settings import SettingsError, load_settings
from tests.payloads import npy


def copy_as(source: Path, folder: Path, filename: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(source, folder / filename))


def test_a_folder_serves_every_exported_file_under_its_recorded_name(
    onnx_models_three: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    copy_as(onnx_models_three["deeper"], folder, "zz-whatever.onnx")
    copy_as(onnx_models_three["improved"], folder, "improved.onnx")
    copy_as(onnx_models_three["baseline"], folder, "b.onnx")
    (folder / "foreign.onnx").write_bytes(b"")  # no project metadata: not one of ours
    (folder / "notes.txt").write_text("ignored")
    found = models_in_dir(folder)
    assert [(s.name, s.path.name if s.path else None) for s in found] == [
        ("baseline", "b.onnx"),
        ("deeper", "zz-whatever.onnx"),
        ("improved", "improved.onnx"),
    ]
    assert "foreign.onnx" in caplog.text and "skipped" in caplog.text
    # FMNIST_MODELS restricts and orders, and every model it lists must be there.
    assert [s.name for s in models_in_dir(folder, ("improved", "baseline"))] == [
        "improved",
        "baseline",
    ]
    with pytest.raises(CatalogError, match="FMNIST_MODELS lists resnet but .* provides baseline"):
        models_in_dir(folder, ("baseline", "resnet"))


def test_a_folder_without_models_or_with_two_files_of_one_model_is_refused(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CatalogError, match="holds no exported model"):
        models_in_dir(empty)
    with pytest.raises(CatalogError, match="is not a folder"):
        models_in_dir(tmp_path / "missing")
    twice = tmp_path / "twice"
    copy_as(onnx_models["baseline"], twice, "a.onnx")
    copy_as(onnx_models["baseline"], twice, "b.onnx")
    with pytest.raises(CatalogError, match="are the same file: version .* of model 'baseline'"):
        models_in_dir(twice)
    corrupt = tmp_path / "corrupt"
    copy_as(onnx_models["baseline"], corrupt, "baseline.onnx")
    (corrupt / "broken.onnx").write_bytes(b"\x0a\xff\xff\xff\x0f garbage")
    with pytest.raises(CatalogError, match=r"broken\.onnx is not a valid ONNX file"):
        models_in_dir(corrupt)


def test_the_default_model_is_the_first_served_or_a_served_one_named() -> None:
    assert load_settings({}).choose_default(("baseline", "deeper"), "x") == "baseline"
    assert load_settings({"FMNIST_MODELS": "deeper,baseline"}).models == ("deeper", "baseline")
    settings = load_settings({"FMNIST_DEFAULT_MODEL": "improved"})
    assert settings.choose_default(("baseline", "deeper", "improved"), "x") == "improved"
    with pytest.raises(SettingsError, match="'improved' is not served: FMNIST_MODEL_DIR=/m"):
        settings.choose_default(("baseline", "deeper"), "FMNIST_MODEL_DIR=/m")
    with pytest.raises(SettingsError, match="FMNIST_DEFAULT_MODEL='x' is not in FMNIST_MODELS"):
        load_settings({"FMNIST_MODELS": "baseline", "FMNIST_DEFAULT_MODEL": "x"})


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


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
    assert [r.split(":")[0] for r in refs] == ["fmnist-baseline", "fmnist-deeper"]

    three_dir = str(onnx_models_three["improved"].parent)
    out = run(["-m", "service.import_models", "--onnx-dir", three_dir], env)
    assert [line.split(":")[0] for line in out.splitlines()] == ["baseline", "deeper", "improved"]
    served, refs = json.loads(run(["-c", DECLARED], env))
    assert served == ["baseline", "deeper", "improved"]
    assert [r.split(":")[0] for r in refs] == [
        "fmnist-baseline",
        "fmnist-deeper",
        "fmnist-improved",
    ]
    # FMNIST_MODELS restricts what is referenced (and so what bentoml build packs).
    served, refs = json.loads(run(["-c", DECLARED], {**env, "FMNIST_MODELS": "improved"}))
    assert served == ["improved"] and [r.split(":")[0] for r in refs] == ["fmnist-improved"]


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["cut short", "graph only"])
def test_import_models_checks_every_file_before_importing_any(
    onnx_models: dict[str, Path], tmp_path: Path, broken: str
) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "true"}
    folder = tmp_path / "onnx"
    copy_as(onnx_models["baseline"], folder, "baseline.onnx")
    data = bytearray(onnx_models["deeper"].read_bytes())
    if broken == "cut short":  # the metadata is gone, the bytes are garbage
        data = data[: len(data) // 2]
    else:  # the metadata reads (deeper is listed), the graph does not load: only onnxruntime
        at = data.find(b"Conv")  # sees it, after baseline was already checked
        data[at : at + 4] = b"Vnoc"
    (folder / "deeper.onnx").write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-m", "service.import_models", "--onnx-dir", str(folder)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "deeper.onnx" in lines[0] and lines[0].startswith("error: ")
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "list", "-o", "json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(listed.stdout or "[]") == []  # all or nothing: baseline not imported
    (folder / "deeper.onnx").unlink()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.import_models",
            "--onnx-dir",
            str(folder),
            "--models",
            "resnet",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--models lists resnet" in done.stderr
