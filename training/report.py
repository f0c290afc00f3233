"""Figures and the summary table of the study, from the project's own training runs.

    fmnist-report                       # reads artifacts/runs, writes docs/results

Writes, for the registered models that have a finished run (matplotlib's object API on
the Agg canvas: no pyplot state, no display):
  curves_MODEL.png         loss and accuracy per epoch, train vs validation (a recipe with
                           label smoothing or augmentation says how its training loss differs)
  depth_comparison.png     validation accuracy and loss of the study's two models (2 vs 3 conv)
  filters_MODEL.png        first-layer 3×3 convolution filters, with their colour scale
  feature_maps_MODEL.png   conv layers' feature maps, one test image per class (layers wrap
                           into bands of three so that deep models stay readable)
  summary.md, summary.json the study's summary table
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from fmnist.contract import ARTIFACTS_DIR, RESULTS_DIR
from fmnist.dataset import CLASS_NAMES, NUM_CLASSES, DatasetError, load_test_set
from fmnist.markdown import markdown_table
from fmnist.registry import get_spec, model_names, study_models
from fmnist.study import SUMMARY_TABLE as STUDY
from training.data import add_dataset_arguments, scale_pixels
from training.models import conv_layers, run_model
from training.recipe import registry_failure

log = logging.getLogger(__name__)

DPI = 110
LAYERS_PER_BAND = 3  # feature maps: conv layers side by side before the figure wraps


def load_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = json.loads((run / "summary.json").read_text())
    history = json.loads((run / "history.json").read_text())
    return summary, history


def _save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def smoothed_loss_floor(smoothing: float, classes: int = NUM_CLASSES) -> float:
    """The least cross-entropy against label-smoothed targets: the targets' own entropy.

    With smoothing ε the target puts 1 − ε + ε/K on the true class and ε/K on each other
    one, so even a perfect model scores H(target) > 0 (0.50 for ε = 0.1, K = 10).
    """
    if smoothing <= 0:
        return 0.0
    true, other = 1 - smoothing + smoothing / classes, smoothing / classes
    return float(-true * math.log(true) - (classes - 1) * other * math.log(other))


def _epoch_axis(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def curves_figure(name: str, history: list[dict[str, Any]], config: dict[str, Any]) -> Figure:
    """Loss and accuracy per epoch. ``config`` is the run's training config (summary.json):
    with label smoothing or augmentation the training numbers are not the validation's kind,
    and the figure says so instead of drawing them as one quantity."""
    smoothing = float(config.get("label_smoothing") or 0.0)
    augmented = bool(config.get("augment"))
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(11, 4.6 if smoothing or augmented else 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    images = "augmented training images" if augmented else "training images"
    if smoothing:
        train_loss = f"train: cross-entropy with label smoothing {smoothing:g}, {images}"
        loss_title = f"{name}: loss (train and validation are different losses)"
    else:
        train_loss = f"train: cross-entropy, {images}"
        loss_title = f"{name}: cross-entropy loss"
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label=train_loss)
    ax_loss.plot(
        epochs, [h["val_loss"] for h in history], "s-", label="validation: plain cross-entropy"
    )
    if smoothing:
        floor = smoothed_loss_floor(smoothing)
        ax_loss.axhline(floor, color="tab:blue", ls=":", lw=1)
        ax_loss.annotate(
            f"least possible smoothed loss ({floor:.2f})",
            (epochs[-1], floor),
            xytext=(0, 4),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="tab:blue",
        )
        ax_loss.set_ylim(bottom=0)
    ax_loss.set(title=loss_title, ylabel="loss (mean per image)")
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label=f"train ({images})")
    ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], "s-", label="validation")
    ax_acc.set(title=f"{name}: accuracy", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax)
        ax.legend(fontsize=8)
    if smoothing:
        fig.suptitle(
            "The training loss is measured against label-smoothed targets, so it cannot fall "
            f"below {smoothed_loss_floor(smoothing):.2f};\nthe validation loss is plain "
            "cross-entropy. Compare their trends, not their values.",
            fontsize=9,
        )
    return fig


def depth_comparison_figure(histories: dict[str, list[dict[str, Any]]]) -> Figure | None:
    """Validation accuracy and loss of the study's models only: the study's depth question
    (2 vs 3 conv layers, same recipe). Models beyond the study change far more than depth,
    so they have their own curves_MODEL.png instead of a place here. None without any."""
    study = {n: h for n, h in histories.items() if n in study_models()}
    if not study:
        return None
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for name, history in study.items():
        epochs = [h["epoch"] for h in history]
        label = f"{name}: {get_spec(name).summary}"
        ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], "o-", label=label)
        ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label=label)
    ax_acc.set(title="validation accuracy by depth (the study's recipe)", ylabel="accuracy (%)")
    ax_loss.set(title="validation loss by depth (cross-entropy)", ylabel="loss")
    for ax in (ax_acc, ax_loss):
        _epoch_axis(ax)
        ax.legend(fontsize=8)
    return fig


def filters_figure(name: str, net: nn.Module) -> Figure:
    """First-layer filters on one symmetric colour scale, with its colorbar."""
    weights = conv_layers(net)[0].weight.detach().cpu().numpy()[:, 0]  # (32, 3, 3)
    cols = 8
    rows = int(np.ceil(len(weights) / cols))
    fig = Figure(figsize=(cols * 1.1 + 1.2, rows * 1.2 + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols)
    limit = float(np.abs(weights).max())
    image = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(weights):
            image = ax.imshow(weights[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(str(i), fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, label="weight (one scale for all filters)", shrink=0.8)
    fig.suptitle(f"{name}: first-layer 3×3 filters (red +, blue −; weights in ±{limit:.2f})")
    return fig


@torch.no_grad()
def feature_maps(net: nn.Module, image: np.ndarray) -> list[np.ndarray]:
    """Post-ReLU activations of every conv layer for one uint8 image: [(C, H, W), ...]."""
    captured: list[np.ndarray] = []
    hooks = []
    features = net.features
    assert isinstance(features, nn.Sequential), "every registered model has .features"
    modules = list(features)
    for i, module in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            # The conv's activation: the first ReLU after it (BatchNorm may sit between).
            relu = next(m for m in modules[i + 1 :] if isinstance(m, nn.ReLU))
            hooks.append(
                relu.register_forward_hook(
                    lambda _m, _inp, out: captured.append(out[0].cpu().numpy())
                )
            )
    net.eval()(scale_pixels(image[None]))
    for h in hooks:
        h.remove()
    return captured


def feature_maps_figure(
    name: str, net: nn.Module, images: np.ndarray, labels: np.ndarray, channels: int = 6
) -> Figure:
    """One row per class: the input, then the ``channels`` most active maps of each conv
    layer. At most :data:`LAYERS_PER_BAND` layers stand side by side; deeper models wrap
    into further bands below, each with the inputs again, so the figure stays about as
    wide as a 3-layer model's and its labels stay legible."""
    per_class = [int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASS_NAMES))]
    maps = [feature_maps(net, images[i]) for i in per_class]
    n_layers = len(maps[0])
    bands = [
        list(range(s, min(s + LAYERS_PER_BAND, n_layers)))
        for s in range(0, n_layers, LAYERS_PER_BAND)
    ]
    cols = 1 + min(n_layers, LAYERS_PER_BAND) * channels
    spacer = 0.7  # height of the gap between bands, in rows
    ratios: list[float] = []
    for b in range(len(bands)):
        ratios += ([spacer] if b else []) + [1.0] * len(per_class)
    fig = Figure(figsize=(cols * 0.9 + 0.6, sum(ratios) * 0.95 + 0.8))
    grid = fig.add_gridspec(len(ratios), cols, height_ratios=ratios, wspace=0.08, hspace=0.12)
    fig.subplots_adjust(
        left=0.07, right=0.995, top=1 - 0.75 / (sum(ratios) * 0.95 + 0.8), bottom=0.01
    )
    top = 0
    for band in bands:
        for row, idx in enumerate(per_class):
            ax = fig.add_subplot(grid[top + row, 0])
            ax.imshow(images[idx], cmap="gray")
            ax.set_ylabel(CLASS_NAMES[labels[idx]], rotation=0, ha="right", va="center", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("input", fontsize=9)
            for slot, layer in enumerate(band):
                fmap = maps[row][layer]
                # The most active channels of this layer for this image.
                order = np.argsort(fmap.reshape(len(fmap), -1).mean(1))[::-1][:channels]
                for k, ch in enumerate(order):
                    ax = fig.add_subplot(grid[top + row, 1 + slot * channels + k])
                    ax.imshow(fmap[ch], cmap="viridis", vmin=0)
                    ax.axis("off")
                    if row == 0 and k == 0:
                        ax.set_title(f"conv{layer + 1}", fontsize=9, loc="left")
        top += len(per_class) + 1
    fig.suptitle(
        f"{name}: input and the {channels} most active feature maps of each conv layer "
        "(after ReLU; each map on its own scale, from 0 = dark to its maximum = yellow)",
        fontsize=11,
    )
    return fig


def summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    """The study's table, ours and theirs row by row, plus what the study did not report."""
    header = [
        "model",
        "run",
        "parameters",
        "best val acc (epoch)",
        "final val acc",
        "final train acc",
        "test acc (exported weights)",
        "test acc, best-val weights",
        "training time",
    ]
    rows = []
    for name, s in summaries.items():
        rows.append(
            [
                name,
                "this project",
                f"{s['parameters']:,}",
                f"{100 * s['best_val_acc']:.2f} % ({s['best_epoch']})",
                f"{100 * s['final_val_acc']:.2f} %",
                f"{100 * s['final_train_acc']:.2f} %",
                f"**{100 * s['test_acc']:.2f} %** ({s.get('exported_weights', 'final')})",
                f"{100 * s['test_acc_best_val_weights']:.2f} %",
                f"{s['train_seconds'] / 60:.1f} min ({s['device']})",
            ]
        )
        if name in STUDY:
            t = STUDY[name]
            rows.append(
                [
                    name,
                    "study",
                    f"{s['parameters']:,}",
                    f"{100 * t['best_val_acc']:.2f} % ({t['best_epoch']})",
                    f"{100 * t['final_val_acc']:.2f} %",
                    f"{100 * t['final_train_acc']:.2f} %",
                    f"{100 * t['test_acc']:.2f} %",
                    "—",
                    "—",
                ]
            )
    return markdown_table(header, rows, align="llrrrrrrr") + "\n"


def write_report(
    artifacts: Path, out: Path, data_dir: Path | None = None, verify: bool = True
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    for name in model_names():
        run = artifacts / "runs" / name
        if (run / "summary.json").exists():
            summaries[name], histories[name] = load_run(run)
    if not summaries:
        raise FileNotFoundError(f"no finished run under {artifacts / 'runs'}; run fmnist-train")
    test = load_test_set(data_dir, verify=verify)
    written = []
    for name, history in histories.items():
        config = summaries[name].get("config", {})
        written.append(_save(curves_figure(name, history, config), out / f"curves_{name}.png"))
        net = run_model(summaries[name])
        net.load_state_dict(
            torch.load(
                artifacts / "runs" / name / "final.pt", map_location="cpu", weights_only=True
            )
        )
        written.append(_save(filters_figure(name, net), out / f"filters_{name}.png"))
        written.append(
            _save(
                feature_maps_figure(name, net, test.images, test.labels),
                out / f"feature_maps_{name}.png",
                dpi=100,
            )
        )
    depth = depth_comparison_figure(histories)
    if depth is not None:
        written.append(_save(depth, out / "depth_comparison.png"))
    (out / "summary.md").write_text(summary_table(summaries))
    (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    for name in histories:
        (out / f"history_{name}.json").write_text(json.dumps(histories[name], indent=2) + "\n")
    return [*written, out / "summary.md", out / "summary.json"]


def main(argv: list[str] | None = None) -> int:
    if (failed := registry_failure()) is not None:
        return failed
    p = argparse.ArgumentParser(
        description="Figures and summary table from training runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    add_dataset_arguments(p)
    args = p.parse_args(argv)
    try:
        written = write_report(args.artifacts, args.out, args.data_dir, not args.skip_checksums)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out}")
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
