"""The training loop on synthetic data: it learns, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

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
    # Per-class accuracy: weighted by each class's share of the test split, it is test_acc.
    counts = torch.bincount(data.test_y, minlength=10)
    per_class = torch.tensor(summary["test_class_acc"])
    assert len(per_class) == 10 and ((per_class >= 0) & (per_class <= 1)).all()
    assert float((per_class * counts).sum() / counts.sum()) == pytest.approx(summary["test_acc"])
    for name in ("checkpoint.pt", "best.pt", "final.pt", "summary.json"):
        assert (tmp_path / "runs" / model / name).exists()


@pytest.mark.parametrize("model", ["baseline", "improved"])  # improved: the weight average too
def test_resume_after_interruption_matches_uninterrupted_run(
    model: str, data: Datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TrainConfig.for_model(model, epochs=3, batch_size=32, seed=3)
    straight = train_model(cfg, data, tmp_path / "straight")

    real_epoch = train_mod.train_one_epoch

    def crash_in_epoch_3(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args[5] == 3:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, data, tmp_path / "resumed")
    ckpt = torch.load(tmp_path / f"resumed/runs/{model}/checkpoint.pt", weights_only=True)
    assert len(ckpt["history"]) == 2  # epochs 1 and 2 were kept
    monkeypatch.setattr(train_mod, "train_one_epoch", real_epoch)
    resumed = train_model(cfg, data, tmp_path / "resumed")

    def without_time(run: str) -> list[dict[str, float]]:
        rows = json.loads((tmp_path / run / f"runs/{model}/history.json").read_text())
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time("resumed") == without_time("straight")
    assert resumed["test_acc"] == straight["test_acc"]
    a = torch.load(tmp_path / f"straight/runs/{model}/final.pt", weights_only=True)
    b = torch.load(tmp_path / f"resumed/runs/{model}/final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_weight_average_recipe_validates_keeps_and_exports_the_average(
    data: Datasets, tmp_path: Path
) -> None:
    cfg = TrainConfig.for_model("improved", epochs=2, batch_size=32, seed=5)
    assert cfg.recipe.ema_decay is not None
    summary = train_model(cfg, data, tmp_path)
    folder = tmp_path / "runs/improved"
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    final = torch.load(folder / "final.pt", weights_only=True)
    average = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    assert set(final) == set(average)
    assert all(torch.equal(final[k], average[k]) for k in final)  # the export is the average
    raw = ckpt["model"]
    assert any(not torch.equal(final[k], raw[k]) for k in final if final[k].is_floating_point())
    history = json.loads((folder / "history.json").read_text())
    # The raw weights are validated once, at the end; the history's val_acc is the average's.
    assert history[0]["val_acc_raw"] is None and history[-1]["val_acc_raw"] is not None
    assert summary["final_val_acc"] == history[-1]["val_acc"] == summary["exported_val_acc"]


def test_class_accuracy_is_each_class_recall() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 1])  # class 0: 3 of 4, class 1: 1 of 2, 2: 0
    logits = nn.functional.one_hot(predicted, 4).float()
    assert train_mod.class_accuracy(logits, labels) == [0.75, 0.5, 0.0, 0.0]  # 3: no images


def test_without_score_test_the_test_split_is_not_scored(data: Datasets, tmp_path: Path) -> None:
    cfg = TrainConfig.for_model("baseline", epochs=1, limit_batches=2)
    summary = train_model(cfg, data, tmp_path, score_test=False)
    assert not [k for k in summary if k.startswith("test_")]
    assert set(summary["calibration"]) == {"val_before", "val_after"}


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


def test_ablation_table_and_no_test_scores(synthetic_data_dir: Path, tmp_path: Path) -> None:
    from training.ablation import main as ablation_main

    results = tmp_path / "results"
    args = ["--data-dir", str(synthetic_data_dir), "--skip-checksums", "--epochs", "2"]
    args += ["--limit-batches", "3", "--out", str(tmp_path / "a"), "--results", str(results)]
    args += ["--full-run", str(tmp_path / "none"), "--variants", "recipe", "less-erasing"]
    assert ablation_main(args) == 0
    table = (results / "ablation_improved.md").read_text()
    rows = json.loads((results / "ablation_improved.json").read_text())
    assert [r["variant"] for r in rows["variants"]] == ["recipe", "less-erasing"]
    assert rows["variants"][1]["recipe"]["erase_p"] == 0.25
    assert rows["variants"][0]["recipe"]["erase_p"] == 0.5
    # Weight averaging is read from the recipe run's raw weights, not trained again.
    assert rows["raw_val_acc"] is not None and "| no-averaging |" in table
    for variant in ("recipe", "less-erasing"):
        summary = json.loads((tmp_path / "a" / variant / "runs/improved/summary.json").read_text())
        assert "test_acc" not in summary  # the ablation never scores the test set
