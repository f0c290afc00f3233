"""The training loop on synthetic data: it learns, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import training.train as train_mod
from training.data import Datasets, load_datasets
from training.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def data(synthetic_data_dir: Path) -> Datasets:
    return load_datasets(synthetic_data_dir, seed=0, verify=False)


def test_split_sizes(data: Datasets) -> None:
    assert len(data.train_x) == 540 and len(data.val_x) == 60 and len(data.test_x) == 200
    assert data.train_x.min() >= -1.0 and data.train_x.max() <= 1.0
    assert data.train_x.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("model", ["baseline", "deeper"])
def test_short_run_lowers_the_loss(model: str, data: Datasets, tmp_path: Path) -> None:
    cfg = TrainConfig.for_model(model, epochs=3, batch_size=32, seed=1)
    summary = train_model(cfg, data, tmp_path)
    history = json.loads((tmp_path / "runs" / model / "history.json").read_text())
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert summary["test_acc"] > 0.5  # chance is 0.1; the synthetic classes are easy
    for name in ("checkpoint.pt", "best.pt", "final.pt", "summary.json"):
        assert (tmp_path / "runs" / model / name).exists()


def test_resume_after_interruption_matches_uninterrupted_run(
    data: Datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TrainConfig.for_model("baseline", epochs=3, batch_size=32, seed=3)
    straight = train_model(cfg, data, tmp_path / "straight")

    real_epoch = train_mod.train_one_epoch

    def crash_in_epoch_3(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args[5] == 3:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, data, tmp_path / "resumed")
    ckpt = torch.load(tmp_path / "resumed/runs/baseline/checkpoint.pt", weights_only=True)
    assert len(ckpt["history"]) == 2  # epochs 1 and 2 were kept
    monkeypatch.setattr(train_mod, "train_one_epoch", real_epoch)
    resumed = train_model(cfg, data, tmp_path / "resumed")

    def without_time(run: str) -> list[dict[str, float]]:
        rows = json.loads((tmp_path / run / "runs/baseline/history.json").read_text())
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time("resumed") == without_time("straight")
    assert resumed["test_acc"] == straight["test_acc"]
    a = torch.load(tmp_path / "straight/runs/baseline/final.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/runs/baseline/final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_config(data: Datasets, tmp_path: Path) -> None:
    train_model(TrainConfig.for_model("baseline", epochs=1, limit_batches=2), data, tmp_path)
    with pytest.raises(ValueError, match="--restart"):
        train_model(
            TrainConfig.for_model("baseline", epochs=1, lr=0.1, limit_batches=2), data, tmp_path
        )


def test_cli_quick_mode(synthetic_data_dir: Path, tmp_path: Path) -> None:
    code = train_mod.main(
        [
            "--models",
            "deeper",
            "--epochs",
            "1",
            "--limit-batches",
            "3",
            "--data-dir",
            str(synthetic_data_dir),
            "--skip-checksums",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "runs/deeper/summary.json").read_text())
    assert summary["parameters"] == 1_701_130 and summary["epochs"] == 1
