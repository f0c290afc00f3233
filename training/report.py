"""Figures and the summary table of the study, from the project's own training runs.

    fmnist-report                       # reads artifacts/runs, writes docs/results

Writes, for the registered models that have a finished run (matplotlib's object API on
the Agg canvas: no pyplot state, no display):
  curves_MODEL.png         loss and accuracy per epoch, train vs validation
  depth_comparison.png     validation accuracy and loss of all models on one figure
  filters_MODEL.png        first-layer 3×3 convolution filters
  feature_maps_MODEL.png   every conv layer's feature maps, one test image per class
  summary.md, summary.json the study's summary table
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from fmnist.contract import ARTIFACTS_DIR, RESULTS_DIR
from fmnist.dataset import CLASS_NAMES, DatasetError, load_test_set
from fmnist.registry import model_names
from fmnist.study import SUMMARY_TABLE as STUDY
from training.data import add_dataset_arguments, scale_pixels
from training.models import build_model, conv_layers
from training.recipe import RegistryError, check_registry

log = logging.getLogger(__name__)


def load_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = json.loads((run / "summary.json").read_text())
    history = json.loads((run / "history.json").read_text())
    return summary, history


def plot_curves(name: str, history: list[dict[str, Any]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax_loss.set(title=f"{name}: cross-entropy loss", xlabel="epoch", ylabel="loss")
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], "s-", label="validation")
    ax_acc.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_depth_comparison(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax_acc.plot(epochs, [100 * h["val_acc"] for h in history], "o-", label=name)
        ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label=name)
    ax_acc.set(title="validation accuracy by depth", xlabel="epoch", ylabel="accuracy (%)")
    ax_loss.set(title="validation loss by depth", xlabel="epoch", ylabel="loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_filters(name: str, net: nn.Module, path: Path) -> None:
    weights = conv_layers(net)[0].weight.detach().cpu().numpy()[:, 0]  # (32, 3, 3)
    cols = 8
    rows = int(np.ceil(len(weights) / cols))
    fig = Figure(figsize=(cols * 1.1, rows * 1.2))
    axes = fig.subplots(rows, cols)
    limit = float(np.abs(weights).max())
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(weights):
            ax.imshow(weights[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"{name}: first-layer 3×3 filters (red +, blue −)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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


def plot_feature_maps(
    name: str, net: nn.Module, images: np.ndarray, labels: np.ndarray, path: Path, channels: int = 6
) -> None:
    """One row per class: the input, then ``channels`` maps of each conv layer."""
    per_class = [int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASS_NAMES))]
    n_layers = len(conv_layers(net))
    cols = 1 + n_layers * channels
    fig = Figure(figsize=(cols * 0.9, len(per_class) * 0.95))
    axes = fig.subplots(len(per_class), cols)
    for row, idx in enumerate(per_class):
        maps = feature_maps(net, images[idx])
        axes[row, 0].imshow(images[idx], cmap="gray")
        axes[row, 0].set_ylabel(CLASS_NAMES[labels[idx]], rotation=0, ha="right", fontsize=8)
        for layer, fmap in enumerate(maps):
            # Show the most active channels of this layer for this image.
            top = np.argsort(fmap.reshape(len(fmap), -1).mean(1))[::-1][:channels]
            for k, ch in enumerate(top):
                ax = axes[row, 1 + layer * channels + k]
                ax.imshow(fmap[ch], cmap="viridis")
                if row == 0:
                    ax.set_title(f"conv{layer + 1}" if k == 0 else "", fontsize=8, loc="left")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{name}: input and the {channels} most active feature maps of each conv layer")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summary_table(summaries: dict[str, dict[str, Any]]) -> str:
    """The study's table, ours and theirs row by row, plus what the study did not report."""
    lines = [
        "| model | run | parameters | best val acc (epoch) | final val acc | final train acc "
        "| test acc (exported weights) | test acc, best-val weights | training time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | this project | {s['parameters']:,} | {100 * s['best_val_acc']:.2f} % "
            f"({s['best_epoch']}) | {100 * s['final_val_acc']:.2f} % "
            f"| {100 * s['final_train_acc']:.2f} % | **{100 * s['test_acc']:.2f} %** "
            f"({s.get('exported_weights', 'final')}) "
            f"| {100 * s['test_acc_best_val_weights']:.2f} % "
            f"| {s['train_seconds'] / 60:.1f} min ({s['device']}) |"
        )
        if name in STUDY:
            t = STUDY[name]
            lines.append(
                f"| {name} | study | {s['parameters']:,} | {100 * t['best_val_acc']:.2f} % "
                f"({t['best_epoch']}) | {100 * t['final_val_acc']:.2f} % "
                f"| {100 * t['final_train_acc']:.2f} % | {100 * t['test_acc']:.2f} % | — | — |"
            )
    return "\n".join(lines) + "\n"


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
        plot_curves(name, history, out / f"curves_{name}.png")
        net = build_model(name)
        net.load_state_dict(
            torch.load(
                artifacts / "runs" / name / "final.pt", map_location="cpu", weights_only=True
            )
        )
        plot_filters(name, net, out / f"filters_{name}.png")
        plot_feature_maps(name, net, test.images, test.labels, out / f"feature_maps_{name}.png")
        written += [out / f"{p}_{name}.png" for p in ("curves", "filters", "feature_maps")]
    plot_depth_comparison(histories, out / "depth_comparison.png")
    (out / "summary.md").write_text(summary_table(summaries))
    (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    for name in histories:
        (out / f"history_{name}.json").write_text(json.dumps(histories[name], indent=2) + "\n")
    return [*written, out / "depth_comparison.png", out / "summary.md", out / "summary.json"]


def main(argv: list[str] | None = None) -> int:
    try:
        check_registry()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
