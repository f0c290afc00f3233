"""fmnist-eval with three served models: every listed model, every pair, the study's scope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluation import cli
from evaluation.client import ServedPredictions, parse_listing
from evaluation.metrics import compare_every_pair, holm_adjusted, model_metrics
from evaluation.report import write_report
from evaluation.run import DatasetInfo, Evaluation, ModelResult
from evaluation.sections.formatting import p_number

PAIRS = [["baseline", "deeper"], ["baseline", "improved"], ["deeper", "improved"]]


def _served(name: str, labels: np.ndarray, accuracy: float, seed: int) -> ServedPredictions:
    rng = np.random.default_rng(seed)
    pred = np.where(rng.random(len(labels)) < accuracy, labels, (labels + 6) % 10)
    probs = rng.dirichlet(np.ones(10), len(labels)) * 0.3
    probs[np.arange(len(labels)), pred] += 0.7
    return ServedPredictions(name, pred, probs.max(1), probs, 0.5, 3)


def test_report_with_three_models(tmp_path: Path) -> None:
    n = 400
    labels = np.arange(n) % 10
    accuracy = {"baseline": 0.85, "deeper": 0.9, "improved": 0.6}
    listing = parse_listing(
        {
            "models": [
                {"name": m, "parameters": 1000, "test_accuracy": a, "sha256": m}
                | ({"metadata": {"temperature": "1.5"}} if m == "improved" else {})
                for m, a in accuracy.items()
            ]
        }
    )
    models = {}
    for seed, (name, acc) in enumerate(accuracy.items()):
        s = _served(name, labels, acc, seed)
        metrics = model_metrics(labels, s.class_index, s.confidence, s.probabilities)
        models[name] = ModelResult(name, s, metrics, listing.models[name], None, "no --onnx-dir")
    comparisons = compare_every_pair({n: r.served.class_index for n, r in models.items()}, labels)
    ev = Evaluation(
        "http://svc",
        DatasetInfo("/data", n, True, None),
        np.zeros((n, 28, 28), np.uint8),
        labels,
        models,
        comparisons,
        "now",
        "cmd",
    )
    out = write_report(ev, tmp_path / "r")
    md = (out / "report.md").read_text()
    assert md.startswith("# Fashion-MNIST service evaluation: baseline, deeper, improved")
    # Headline: one row per model; per class: every model side by side.
    for name in accuracy:
        assert f"\n| {name} | " in md.split("## Headline")[1].split("## ")[0]
    assert "| class | images | study acc. | baseline acc. | deeper acc. | improved acc. |" in md
    for name in accuracy:  # precision and F1 in each model's own section
        own = md.split(f"## Model: {name}")[1].split("\n## ")[0]
        assert "| class | images | accuracy |" in own and "| precision | F1 |" in own
    # The study covers baseline and deeper only.
    study = md.split("## Against the study")[1].split("## ")[0]
    assert "\n| improved |" not in study and "\n| deeper |" in study
    assert "**improved** is beyond the study" in study
    assert "**improved**: " in md and "beyond the study: the study trained" in md
    # Every pair: an overview with Holm-adjusted p, then each pair's 2x2 table and verdict.
    paired = md.split("## Do the models perform the same?")[1].split("## ")[0]
    assert "| pair (a vs b) |" in paired and "Holm-adjusted p" in paired
    for a, b in PAIRS:
        assert f"| {a} vs {b} |" in paired
        assert f"{a} vs {b} on the same images" in paired
    assert "**baseline vs deeper**: the study's claim that both models perform the same" in paired
    assert "**deeper vs improved**: beyond the study" in paired
    assert "T = 1.5, folded into the ONNX graph" in md
    metrics = json.loads((out / "metrics.json").read_text())
    assert [[c["model_a"], c["model_b"]] for c in metrics["comparisons"]] == PAIRS
    raw = [c["p_value"] for c in metrics["comparisons"]]
    holm = [c["p_value_holm"] for c in metrics["comparisons"]]
    assert holm == pytest.approx(holm_adjusted(raw)) and holm != raw
    assert f"| {p_number(raw[0])} | {p_number(holm[0])} | differ |" in paired  # the same p
    assert {n: m["in_study"] for n, m in metrics["models"].items()} == {
        "baseline": True,
        "deeper": True,
        "improved": False,
    }


@pytest.mark.slow
def test_cli_evaluates_every_listed_model_and_every_pair(
    fake_service_three: Any,
    onnx_models_three: dict[str, Path],
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import onnxruntime as ort

    from fmnist.dataset import load_test_set

    svc = fake_service_three()
    out = tmp_path / "eval"
    onnx_dir = onnx_models_three["improved"].parent
    args = [
        *("--url", svc.url, "--out", str(out), "--data-dir", str(synthetic_data_dir)),
        *("--onnx-dir", str(onnx_dir), "--skip-checksums", "--no-progress", "--batch-size", "100"),
    ]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert svc.npy_requests == 3 * 2  # 200 images, 2 batches per model
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["baseline", "deeper", "improved"]
    assert [[c["model_a"], c["model_b"]] for c in metrics["comparisons"]] == PAIRS
    assert [c["p_value_holm"] for c in metrics["comparisons"]] == pytest.approx(
        holm_adjusted([c["p_value"] for c in metrics["comparisons"]])
    )
    split = load_test_set(synthetic_data_dir, verify=False)
    sess = ort.InferenceSession(str(onnx_models_three["improved"]))
    probs = sess.run(["probabilities"], {"pixels": split.images.astype(np.float32)[:, None]})[0]
    improved = metrics["models"]["improved"]
    assert improved["metrics"]["accuracy"]["estimate"] == pytest.approx(
        float(np.mean(probs.argmax(1) == split.labels))
    )
    assert improved["serving_skew"]["ok"] is True and improved["in_study"] is False
    assert {"confusion_improved.png", "mistakes_improved.png"} <= {p.name for p in out.iterdir()}
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 11  # 3 per model + 2 shared
    assert "improved</strong> is beyond the study" in html
    stdout = capsys.readouterr().out
    assert stdout.count("McNemar p =") == 3 and "improved: accuracy" in stdout
