"""fmnist-eval end to end against a real ``bentoml serve`` of the fixture models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from evaluation import cli
from fmnist.dataset import load_test_set

pytestmark = pytest.mark.slow


def test_fmnist_eval_against_bentoml_serve(
    onnx_models: dict[str, Path],
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("bentoml")
    from loadtests.launch import bentoml_server  # starts `python -m bentoml serve`

    onnx_dir = onnx_models["baseline"].parent
    env = {
        "FMNIST_MODEL_DIR": str(onnx_dir),
        "FMNIST_WORKERS": "1",
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    out = tmp_path / "eval"
    with bentoml_server(env, log_path=tmp_path / "serve.log") as url:
        rc = cli.main(
            [
                "--url",
                url,
                "--out",
                str(out),
                "--data-dir",
                str(synthetic_data_dir),
                "--onnx-dir",
                str(onnx_dir),
                "--skip-checksums",
                "--no-progress",
                "--batch-size",
                "64",
                "--concurrency",
                "2",
            ]
        )
    assert rc == 0, capsys.readouterr().err

    split = load_test_set(synthetic_data_dir, verify=False)
    metrics = json.loads((out / "metrics.json").read_text())
    for name, path in onnx_models.items():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        local = sess.run(["probabilities"], {"pixels": split.images.astype(np.float32)[:, None]})
        m = metrics["models"][name]
        assert m["metrics"]["accuracy"]["estimate"] == pytest.approx(
            float(np.mean(local[0].argmax(1) == split.labels))
        )
        assert m["serving_skew"]["ok"] is True and m["serving_skew"]["same_file"] is True
        assert m["serving_skew"]["images"] == len(split.labels) == 200
        # the answers' float32 numbers, read as float32, are onnxruntime's bit for bit
        assert m["serving_skew"]["max_abs_prob_diff"] == 0.0
        assert m["served_model"]["name"] == name
        assert m["served_model"]["test_accuracy"] == pytest.approx(0.1)
        assert m["throughput"]["requests"] == 4  # 200 images in batches of 64
    assert len(metrics["comparisons"]) == 1
    assert '<h2 id="serving-skew">Serving skew<' in (out / "report.html").read_text()
