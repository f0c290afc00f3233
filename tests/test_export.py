"""ONNX export: self-contained file, dynamic batch, raw-pixel contract, metadata, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import training.export as export_mod
from fmnist import contract
from training.data import load_datasets, scale_pixels
from training.export import (
    PARITY_TOLERANCE,
    ExportError,
    ParityReport,
    check_parity,
    export_run,
    onnx_session,
)
from training.models import build_model
from training.train import TrainConfig, train_model


@pytest.mark.parametrize("name", ["baseline", "deeper"])
def test_file_is_self_contained_with_dynamic_batch(onnx_models: dict[str, Path], name: str) -> None:
    path = onnx_models[name]
    assert list(path.parent.glob("*.data")) == []
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_name"] == name
    assert json.loads(meta["class_names"])[6] == "Shirt"
    sess = onnx_session(path)
    assert [i.name for i in sess.get_inputs()] == ["pixels"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    for batch in (1, 257):
        logits, probs = sess.run(None, {"pixels": np.full((batch, 1, 28, 28), 80, np.float32)})
        assert logits.shape == probs.shape == (batch, 10)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_graph_does_the_scaling(onnx_models: dict[str, Path]) -> None:
    torch.manual_seed(0)  # the fixture's seed: the same untrained weights
    net = build_model("baseline").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    onnx_logits = onnx_session(onnx_models["baseline"]).run(
        ["logits"], {"pixels": images[:, None].astype(np.float32)}
    )[0]
    with torch.no_grad():
        torch_logits = net(scale_pixels(images)).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


def test_export_run_checks_parity_and_fails_loudly(
    synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_datasets(synthetic_data_dir, seed=0, verify=False)
    train_model(TrainConfig.for_model("baseline", epochs=1, limit_batches=3), data, tmp_path)
    run = tmp_path / "runs" / "baseline"
    record = export_run(run, tmp_path / "baseline.onnx", data.test_images)
    assert record["parity_images"] == 200 and record["argmax_mismatches"] == 0
    assert record["max_abs_logit_diff"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "baseline.onnx")).metadata_props}
    assert meta["parameters"] == "421642" and meta["torch_version"] == torch.__version__
    assert "train-images-idx3-ubyte" in json.loads(meta["dataset_md5"])
    assert float(meta["test_accuracy"]) == pytest.approx(
        json.loads((run / "summary.json").read_text())["test_acc"], abs=1e-6
    )

    net = build_model("baseline")
    net.load_state_dict(torch.load(run / "final.pt", weights_only=True))
    report = check_parity(tmp_path / "baseline.onnx", net.eval(), data.test_images)
    assert report.ok

    monkeypatch.setattr(export_mod, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_run(run, tmp_path / "again.onnx", data.test_images)
    assert not (tmp_path / "again.onnx").exists()


def test_temperature_is_folded_into_the_graph(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)  # the fixture's seed: the same untrained weights
    net = build_model("baseline").eval()
    scaled = export_mod.export_onnx(
        net, tmp_path / "t.onnx", {"model_name": "baseline"}, temperature=2.0
    )
    pixels = np.random.default_rng(1).integers(0, 256, (8, 1, 28, 28)).astype(np.float32)
    plain_logits = onnx_session(onnx_models["baseline"]).run(["logits"], {"pixels": pixels})[0]
    logits, probs = onnx_session(scaled).run(None, {"pixels": pixels})
    np.testing.assert_allclose(logits, plain_logits / 2.0, atol=1e-5)
    assert (probs.argmax(1) == plain_logits.argmax(1)).all()
    assert check_parity(scaled, net, pixels[:, 0].astype(np.uint8), temperature=2.0).ok


def test_parity_tolerance_is_pinned() -> None:
    # float32 round-off between onnxruntime and PyTorch is ~1e-6; 1e-4 is the promise.
    assert PARITY_TOLERANCE == 1e-4
    assert ParityReport(10, 1e-4, 0).ok
    assert not ParityReport(10, 1.01e-4, 0).ok
    assert not ParityReport(10, 0.0, 1).ok  # one flipped answer fails whatever the logits


def test_training_scales_pixels_as_the_contract_and_the_graph_do() -> None:
    images = np.array([[[0, 51, 255] + [0] * 25] * 28], dtype=np.uint8)  # (1, 28, 28)
    x = scale_pixels(images)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 0, :3].tolist() == pytest.approx([-1.0, -0.6, 1.0], abs=1e-7)
    # Bit for bit the same numbers as fmnist.contract (what the service's clients use).
    assert np.array_equal(x.numpy(), contract.scale_pixels(images)[:, None])


def test_default_locations_are_pinned() -> None:
    assert Path("artifacts") == contract.ARTIFACTS_DIR
    assert contract.onnx_dir() == Path("artifacts/onnx")
    assert contract.onnx_dir("out") == Path("out/onnx")
    assert Path("docs/results") == contract.RESULTS_DIR
