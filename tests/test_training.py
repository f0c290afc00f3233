"""The training loop on synthetic data: it learns, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import training.train as train_mod
from training.data import Datasets, load_datasets
from training.models import build_model, run_model
from training.train import TrainConfig, read_history, train_model


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


# improved: the weight average too; with CutMix: its draws come from the seeded generator.
@pytest.mark.parametrize(
    ("model", "cutmix_p"), [("baseline", None), ("improved", None), ("improved", 0.5)]
)
def test_resume_after_interruption_matches_uninterrupted_run(
    model: str,
    cutmix_p: float | None,
    data: Datasets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = TrainConfig.for_model(model, epochs=3, batch_size=32, seed=3, cutmix_p=cutmix_p)
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


def test_ablation_candidates_distil_from_the_seeds_full_run_and_flip_tta_is_scored(
    synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.ablation import main as ablation_main
    from training.models import build_model
    from training.recipe import IMPROVED

    results = tmp_path / "results"
    args = ["--data-dir", str(synthetic_data_dir), "--skip-checksums", "--epochs", "2"]
    args += ["--limit-batches", "3", "--out", str(tmp_path / "a"), "--results", str(results)]
    args += ["--variants", "distillation", "--seed", "7"]
    # No full run of the seed, so no teacher: one line, exit 2, nothing trained.
    assert ablation_main([*args, "--full-run", str(tmp_path / "none")]) == 2
    assert "error: distillation: no teacher weights at " in capsys.readouterr().err
    # A finished full run of seed 7 (its files as training writes them; untrained weights).
    full = tmp_path / "full/runs/improved"
    full.mkdir(parents=True)
    torch.manual_seed(0)
    net = build_model("improved").eval()
    torch.save(net.state_dict(), full / "final.pt")
    config = TrainConfig(model="improved", recipe=IMPROVED, seed=7).result_fields()
    cal = {"val_after": {"ece": 0.1, "nll": 1.0}}
    fields = {"epochs": 60, "final_val_acc": 0.5, "best_val_acc": 0.5, "exported_val_acc": 0.5}
    summary = {"model": "improved", "config": config, "calibration": cal, "train_seconds": 60}
    (full / "summary.json").write_text(json.dumps({**summary, **fields}))
    assert ablation_main([*args, "--full-run", str(tmp_path / "full")]) == 0
    taught = json.loads((tmp_path / "a/distillation/runs/improved/summary.json").read_text())
    digest = train_mod.teacher_fingerprint(full)
    assert taught["config"]["teacher"] == digest and taught["config"]["distill_weight"] > 0
    rows = json.loads((results / "ablation_improved.json").read_text())
    assert [r["variant"] for r in rows["variants"]] == ["full-schedule", "distillation"]
    # Flip TTA: the full run's weights, logits of each image and its mirror image averaged.
    data = load_datasets(synthetic_data_dir, seed=7, verify=False)
    with torch.no_grad():
        both = net(data.val_x) + net(data.val_x.flip(3))
    expected = float((both.argmax(1) == data.val_y).float().mean())
    assert rows["flip_tta_val_acc"] == pytest.approx(expected)
    table = (results / "ablation_improved.md").read_text()
    assert "| flip-tta | the full run's weights" in table
    assert f"{100 * expected:.2f}% | {100 * (expected - 0.5):+.2f} pp vs full" in table


def test_a_recipes_model_args_shape_the_run_and_everything_that_reads_it_back(
    data: Datasets, tmp_path: Path
) -> None:
    """The wider candidate: trained in its shape, recorded with it, and exported, scored
    mirrored and loaded as a teacher in that shape (not the class's default one)."""
    from training.ablation import WIDER
    from training.export import export_run

    cfg = TrainConfig.for_model("improved", epochs=1, limit_batches=2, model_args=WIDER)
    summary = train_model(cfg, data, tmp_path)
    assert summary["config"]["model_args"] == WIDER
    folder = train_mod.run_dir(tmp_path, "improved")
    assert json.loads((folder / "summary.json").read_text())["config"]["model_args"] == WIDER
    final = torch.load(folder / "final.pt", weights_only=True)
    assert final["features.7.weight"].shape[:2] == (96, 32)  # block 2's first convolution
    assert final["classifier.5.weight"].shape == (10, 128)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    record = export_run(folder, tmp_path / "wide.onnx", images)
    assert record["argmax_mismatches"] == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "wide.onnx")).metadata_props}
    assert meta["parameters"] == "841642"
    assert 0.0 <= train_mod.flip_tta_val_acc(folder, data) <= 1.0
    teacher = train_mod.load_teacher(folder, torch.device("cpu"), channels_last=False)
    assert sum(p.numel() for p in teacher.parameters()) == 841_642
    # The same folder with the registered shape is another run: resuming it is refused.
    with pytest.raises(ValueError, match="was made with"):
        train_model(TrainConfig.for_model("improved", epochs=1, limit_batches=2), data, tmp_path)


def test_a_residual_run_exports_a_graph_that_agrees_with_pytorch(
    data: Datasets, tmp_path: Path
) -> None:
    from training.ablation import RESIDUAL
    from training.export import export_run

    cfg = TrainConfig.for_model("improved", epochs=1, limit_batches=2, model_args=RESIDUAL)
    train_model(cfg, data, tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    record = export_run(train_mod.run_dir(tmp_path, "improved"), tmp_path / "r.onnx", images)
    assert record["argmax_mismatches"] == 0
    graph = onnx.load(str(tmp_path / "r.onnx"))
    assert {p.key: p.value for p in graph.metadata_props}["parameters"] == "595338"
    assert sum(n.op_type == "Add" for n in graph.graph.node) == 3  # the shortcuts


@pytest.mark.parametrize(
    ("variant", "model_args", "params"),
    [
        ("wider", {"widths": [32, 96, 192], "hidden": 128}, 841_642),
        ("residual", {"residual": True}, 595_338),
    ],
)
def test_an_ablation_candidate_of_another_shape_records_it(
    synthetic_data_dir: Path, tmp_path: Path, variant: str, model_args: dict[str, Any], params: int
) -> None:
    from training.ablation import main as ablation_main

    results = tmp_path / "results"
    args = ["--data-dir", str(synthetic_data_dir), "--skip-checksums", "--epochs", "1"]
    args += ["--limit-batches", "2", "--out", str(tmp_path / "a"), "--results", str(results)]
    args += ["--full-run", str(tmp_path / "none"), "--variants", variant]
    assert ablation_main(args) == 0
    rows = json.loads((results / "ablation_improved.json").read_text())["variants"]
    assert [r["variant"] for r in rows] == [variant]
    assert rows[0]["recipe"]["model_args"] == model_args and rows[0]["recipe"]["epochs"] == 1
    assert f"{params:,} parameters" in (results / "ablation_improved.md").read_text()
    folder = tmp_path / "a" / variant / "runs/improved"
    run = json.loads((folder / "summary.json").read_text())
    assert run["config"]["model_args"] == model_args and "test_acc" not in run
    net = run_model(run)
    net.load_state_dict(torch.load(folder / "final.pt", weights_only=True))
    assert sum(p.numel() for p in net.parameters()) == params


def test_a_cutmix_recipe_trains_on_mixed_batches(data: Datasets, tmp_path: Path) -> None:
    def first_epoch(cutmix_p: float) -> dict[str, float]:
        cfg = TrainConfig.for_model(
            "improved", epochs=2, batch_size=32, seed=4, limit_batches=4, cutmix_p=cutmix_p
        )
        train_model(cfg, data, tmp_path / str(cutmix_p), score_test=False)
        row: dict[str, float] = read_history(tmp_path / str(cutmix_p), "improved")[0]
        return row

    plain, mixed = first_epoch(0.0), first_epoch(1.0)
    # The same images in the same order: only the pasted rectangles and mixed labels differ.
    assert mixed["train_loss"] != plain["train_loss"]


def test_a_distillation_recipe_learns_from_its_teacher_and_records_which(
    data: Datasets, tmp_path: Path
) -> None:
    teacher_cfg = TrainConfig.for_model("improved", epochs=2, batch_size=32, seed=6)
    train_model(teacher_cfg, data, tmp_path / "teacher")
    teacher = tmp_path / "teacher/runs/improved"

    def run(name: str, weight: float, teacher_dir: Path | None) -> dict[str, Any]:
        cfg = TrainConfig.for_model(
            "improved",
            epochs=2,
            batch_size=32,
            seed=6,
            limit_batches=4,
            distill_weight=weight,
            teacher=teacher_dir,
        )
        return train_model(cfg, data, tmp_path / name, score_test=False)

    plain, taught = run("plain", 0.0, None), run("taught", 0.9, teacher)
    assert "teacher" not in plain["config"] and "distill_weight" not in plain["config"]
    assert taught["config"]["teacher"] == train_mod.teacher_fingerprint(teacher)
    assert taught["config"]["distill_weight"] == 0.9
    losses = [read_history(tmp_path / n, "improved")[0]["train_loss"] for n in ("plain", "taught")]
    assert losses[0] != losses[1]  # the soft targets are in the loss
    with pytest.raises(ValueError, match="needs a teacher run folder"):
        run("orphan", 0.9, None)
    with pytest.raises(ValueError, match="no teacher weights"):
        run("wrong", 0.9, tmp_path / "plain")
    # The same weights saved again, as other bytes, are the same teacher: the run resumes.
    weights = torch.load(teacher / "final.pt", weights_only=True)
    (tmp_path / "copy").mkdir()
    torch.save({k: v.clone() for k, v in weights.items()}, tmp_path / "copy/final.pt")
    (tmp_path / "copy/summary.json").write_text((teacher / "summary.json").read_text())
    assert (tmp_path / "copy/final.pt").read_bytes() != (teacher / "final.pt").read_bytes()
    assert run("taught", 0.9, tmp_path / "copy") == taught
    # Another teacher is another run: resuming the taught run with it is refused.
    (tmp_path / "other").mkdir()
    torch.save(
        {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()},
        tmp_path / "other/final.pt",
    )
    (tmp_path / "other/summary.json").write_text((teacher / "summary.json").read_text())
    with pytest.raises(ValueError, match="--restart"):
        run("taught", 0.9, tmp_path / "other")


def test_flip_tta_averages_each_images_logits_with_its_mirror_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("baseline").eval()
    folder = tmp_path / "runs/baseline"
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / "final.pt")
    (folder / "summary.json").write_text(json.dumps({"model": "baseline"}))
    x = torch.rand(200, 1, 28, 28) * 2 - 1  # asymmetric images
    with torch.no_grad():
        plain, mirrored = net(x), net(x.flip(3))
    y = (plain + mirrored).argmax(1)  # labels the averaged logits get right, every one
    assert (plain.argmax(1) != y).any() and (mirrored.argmax(1) != y).any()
    empty = torch.zeros(0, 1, 28, 28)
    data = Datasets(
        train_x=empty,
        train_y=torch.zeros(0, dtype=torch.long),
        val_x=x,
        val_y=y,
        test_x=empty,
        test_y=torch.zeros(0, dtype=torch.long),
        test_images=np.zeros((0, 28, 28), np.uint8),
        checksums={},
        source=tmp_path,
    )
    assert train_mod.flip_tta_val_acc(folder, data) == 1.0


def test_the_train_step_benchmark_times_each_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.train_step_cost import main as step_cost_main

    step_cost_main(["--model", "improved", "--batch", "4", "8", "--steps", "2"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()]
    timed = [[cell.strip() for cell in r] for r in rows if r and r[0].strip() == "eager"]
    assert [r[1] for r in timed] == ["4", "8"]  # one row per batch size, no compile unasked
    for _, batch, ms, rate in timed:  # images/s is the batch over the step's time
        expected = int(batch) / float(ms) * 1e3  # printed to whole images/s
        assert float(rate.replace(",", "")) == pytest.approx(expected, rel=0.05, abs=0.5)


def test_the_train_step_benchmark_times_another_shape_and_names_a_wrong_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks.train_step_cost import main as step_cost_main

    step_cost_main(["--batch", "4", "--steps", "1", "--model-args", '{"residual": true}'])
    assert '`improved` {"residual": true} (595,338 parameters)' in capsys.readouterr().out
    step_cost_main(["--batch", "4", "--steps", "1"])
    assert "`improved` (584,618 parameters)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        step_cost_main(["--batch", "4", "--model-args", "[1]"])
    assert "'[1]' is not a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["baseline", "improved"])
@pytest.mark.parametrize("limit", [None, 2])
def test_the_throughput_benchmark_counts_the_images_the_loop_trains_on(
    model: str, limit: int | None
) -> None:
    # The study's models train in batches of 64, `improved` in batches of 128: the
    # benchmark's images/s counts each model's own batches, including a short last one.
    from benchmarks.train_throughput import images_in

    cfg = TrainConfig.for_model(model, epochs=1, limit_batches=limit)
    n = 300
    x, y = torch.rand(n, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (n,))
    net = build_model(model)
    fed: list[int] = []
    net.register_forward_hook(lambda _m, args, _out: fed.append(len(args[0])))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    train_mod.train_one_epoch(net, opt, x, y, cfg, 1, channels_last=False)
    assert images_in(cfg, n) == sum(fed)
