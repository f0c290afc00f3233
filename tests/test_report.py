"""Training figures and the summary table, from a real (tiny) training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import load_datasets
from training.report import feature_maps, main, summary_table
from training.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def artifacts(synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    data = load_datasets(synthetic_data_dir, seed=0, verify=False)
    for name in ("baseline", "improved"):
        train_model(TrainConfig.for_model(name, epochs=2, limit_batches=3), data, out)
    return out


def test_report_writes_every_figure_and_the_table(
    artifacts: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    code = main(
        [
            "--artifacts",
            str(artifacts),
            "--out",
            str(tmp_path),
            "--data-dir",
            str(synthetic_data_dir),
            "--skip-checksums",
        ]
    )
    assert code == 0
    for name in ("baseline", "improved"):
        for kind in ("curves", "filters", "feature_maps"):
            with Image.open(tmp_path / f"{kind}_{name}.png") as img:
                assert img.width > 300 and img.height > 200
    assert (tmp_path / "depth_comparison.png").exists()
    assert not (tmp_path / "curves_deeper.png").exists()  # no run, no figure
    table = (tmp_path / "summary.md").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"baseline", "improved"}
    acc = 100 * summary["baseline"]["test_acc"]
    assert f"**{acc:.2f} %** (final)" in table
    assert "| baseline | study | 421,642 | 92.88 % (16)" in table  # the study's row beside ours
    assert "(best)" in table  # improved exports its best-validation weights


def test_feature_maps_cover_every_conv_layer() -> None:
    import torch

    from training.models import build_model

    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    shapes = [m.shape for m in feature_maps(build_model("deeper"), image)]
    assert shapes == [(32, 28, 28), (64, 14, 14), (128, 7, 7)]
    improved = [m.shape for m in feature_maps(build_model("improved"), image)]
    assert len(improved) == 6 and all(
        (m >= 0).all() for m in feature_maps(build_model("improved"), image)
    )  # post-ReLU activations


def test_report_without_runs_is_a_one_line_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--artifacts", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "run fmnist-train" in capsys.readouterr().err


def test_summary_table_formats_minutes_and_study_rows() -> None:
    row = {
        "parameters": 1_701_130,
        "best_val_acc": 0.93,
        "best_epoch": 11,
        "final_val_acc": 0.92,
        "final_train_acc": 0.98,
        "test_acc": 0.9233,
        "test_acc_best_val_weights": 0.9217,
        "train_seconds": 600,
        "device": "cpu",
    }
    table = summary_table({"deeper": row})
    assert "| deeper | this project | 1,701,130 | 93.00 % (11) |" in table
    assert "**92.33 %** (final)" in table and "10.0 min (cpu)" in table
    assert "| deeper | study |" in table
