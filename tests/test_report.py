"""Training figures and the summary table, from a real (tiny) training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from fmnist.dataset import CLASS_NAMES
from training.data import load_datasets
from training.report import (
    curves_figure,
    depth_comparison_figure,
    feature_maps,
    feature_maps_figure,
    filters_figure,
    main,
    smoothed_loss_floor,
    summary_table,
)
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
    (improved_row,) = [r for r in table.splitlines() if r.startswith("| improved | this project")]
    assert "(final)" in improved_row  # improved exports its final (weight-averaged) weights


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


def _history(epochs: int = 20) -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    return [
        {
            "epoch": e,
            "train_loss": 1.2 - 0.03 * e,
            "train_acc": 0.7 + 0.01 * e,
            "val_loss": 0.6 - 0.02 * e + rng.uniform(0, 0.01),
            "val_acc": 0.8 + 0.005 * e,
        }
        for e in range(1, epochs + 1)
    ]


def _texts(fig: Figure) -> str:
    """Every string drawn on the figure: titles, labels, legends, annotations."""
    return "\n".join(t.get_text() for t in fig.findobj(Text))


@pytest.mark.parametrize("epochs", [3, 7, 20])
def test_epoch_axes_tick_whole_epochs(epochs: int) -> None:
    fig = curves_figure("m", _history(epochs), {})
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_curves_say_when_the_training_loss_is_label_smoothed() -> None:
    smoothed = _texts(curves_figure("improved", _history(), {"label_smoothing": 0.1}))
    assert "label smoothing 0.1" in smoothed and "plain cross-entropy" in smoothed
    assert "cannot fall below 0.50" in smoothed
    plain = _texts(curves_figure("baseline", _history(), {"label_smoothing": 0.0}))
    assert "smoothing" not in plain and "cross-entropy loss" in plain


def test_smoothed_loss_floor_is_the_least_smoothed_cross_entropy() -> None:
    import torch

    floor = smoothed_loss_floor(0.1)
    target = torch.tensor([3])
    q = torch.full((1, 10), 0.01)
    q[0, 3] = 0.91  # the smoothed target itself: the best a model can answer
    best = torch.nn.functional.cross_entropy(q.log(), target, label_smoothing=0.1).item()
    assert floor == pytest.approx(best, abs=1e-6) and 0.49 < floor < 0.51
    logits = torch.randn(1000, 10) * 5
    others = torch.nn.functional.cross_entropy(
        logits, torch.randint(0, 10, (1000,)), label_smoothing=0.1, reduction="none"
    )
    assert others.min().item() > floor
    assert smoothed_loss_floor(0.0) == 0.0


def test_depth_comparison_holds_only_the_studys_models() -> None:
    fig = depth_comparison_figure(
        {"baseline": _history(), "deeper": _history(), "improved": _history()}
    )
    assert fig is not None
    for ax in fig.axes:
        names = [line.get_label().split(":")[0] for line in ax.get_lines()]
        assert names == ["baseline", "deeper"]
    assert depth_comparison_figure({"improved": _history()}) is None


def test_filters_carry_their_colour_scale() -> None:
    import torch

    from training.models import build_model

    torch.manual_seed(0)
    net = build_model("baseline")
    fig = filters_figure("baseline", net)
    (colorbar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    limit = float(net.features[0].weight.detach().abs().max())
    assert colorbar.get_ylim() == pytest.approx((-limit, limit))
    assert f"±{limit:.2f}" in _texts(fig)


def test_feature_maps_of_a_deep_model_wrap_into_bands() -> None:
    """improved has six conv layers: two bands of three, as wide as deeper's one band."""
    import torch

    from training.models import build_model

    torch.manual_seed(0)
    labels = np.arange(20) % 10
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    deep = feature_maps_figure("improved", build_model("improved"), images, labels)
    three = feature_maps_figure("deeper", build_model("deeper"), images, labels)
    assert deep.get_figwidth() == three.get_figwidth() <= 18
    assert deep.get_figheight() > 1.9 * three.get_figheight()
    titles = [ax.get_title(loc="left") for ax in deep.axes if ax.get_title(loc="left")]
    assert titles == [f"conv{i}" for i in range(1, 7)]
    inputs = [ax.get_ylabel() for ax in deep.axes if ax.get_ylabel()]
    assert inputs == list(CLASS_NAMES) * 2  # the contract's names, once per band
