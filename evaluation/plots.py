"""Report figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state,
no display needed). Each function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from evaluation.metrics import ConfusedPair, ModelMetrics, Reliability
from fmnist.dataset import CLASS_NAMES

DPI = 110
SHORT_NAMES = tuple(n.replace("T-shirt/top", "T-shirt") for n in CLASS_NAMES)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def confusion_heatmap(cm: np.ndarray, model: str, path: Path) -> Path:
    """Row-normalised: each row shows where one true class's images went, in percent."""
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0) * 100
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% of the true class", shrink=0.8)
    for t in range(cm.shape[0]):
        for p in range(cm.shape[1]):
            if cm[t, p]:
                ax.text(p, t, f"{share[t, p]:.0f}" if share[t, p] >= 1 else "<1",
                        ha="center", va="center", fontsize=8,
                        color="white" if share[t, p] > 55 else "black")
    ax.set_xticks(range(len(SHORT_NAMES)), SHORT_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(SHORT_NAMES)), SHORT_NAMES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{model}: confusion matrix (row-normalised, %)")
    return _save(fig, path)


def per_class_accuracy(
    metrics: Mapping[str, ModelMetrics], study: Mapping[str, float], path: Path
) -> Path:
    """Grouped bars, one per model and class, with the study's numbers as black ticks."""
    fig = Figure(figsize=(10, 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(CLASS_NAMES))
    width = 0.8 / max(len(metrics), 1)
    for i, (name, m) in enumerate(metrics.items()):
        values = [c.accuracy * 100 for c in m.per_class]
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=f"{name} (served)")
    ax.scatter(x, [study[n] * 100 for n in CLASS_NAMES], marker="_", s=400, color="black",
               linewidths=2, zorder=3, label="study")
    low = min([study[n] * 100 for n in CLASS_NAMES]
              + [c.accuracy * 100 for m in metrics.values() for c in m.per_class])
    ax.set_ylim(max(0, low - 10), 100)
    ax.set_xticks(x, SHORT_NAMES, rotation=30, ha="right")
    ax.set_ylabel("accuracy on the class (%)")
    ax.set_title("Per-class accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def _image_grid(
    images: np.ndarray, titles: Sequence[str], cols: int, fig: Figure, rows: int, row0: int = 0
) -> None:
    for k, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, row0 * cols + k + 1)
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(title, fontsize=7)
        ax.axis("off")


def mistakes_gallery(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray,
    model: str, path: Path, count: int = 24, cols: int = 8,
) -> Path:
    """The ``count`` mistakes the model was most sure of, most confident first."""
    wrong = np.flatnonzero(y_true != y_pred)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    rows = max(1, -(-len(chosen) // cols))
    fig = Figure(figsize=(cols * 1.35, rows * 1.65 + 0.5))
    titles = [f"#{i}\ntrue {SHORT_NAMES[y_true[i]]}\npred {SHORT_NAMES[y_pred[i]]} "
              f"{confidence[i]:.0%}" for i in chosen]
    _image_grid(images[chosen], titles, cols, fig, rows)
    fig.suptitle(f"{model}: the {len(chosen)} most confident mistakes", fontsize=11)
    return _save(fig, path)


def confused_pair_gallery(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray,
    pairs: Sequence[ConfusedPair], model: str, path: Path, per_pair: int = 8,
) -> Path:
    """One row per confused pair (true → predicted), its most confident examples."""
    rows = max(1, len(pairs))
    fig = Figure(figsize=(per_pair * 1.35, rows * 1.75 + 0.5))
    for r, pair in enumerate(pairs):
        hits = np.flatnonzero((y_true == pair.true) & (y_pred == pair.predicted))
        chosen = hits[np.argsort(-confidence[hits], kind="stable")][:per_pair]
        titles = [f"#{i} {confidence[i]:.0%}" for i in chosen]
        _image_grid(images[chosen], titles, per_pair, fig, rows, row0=r)
        fig.text(0.0, 1 - (r + 0.5) / rows, f"{SHORT_NAMES[pair.true]}\n→ "
                 f"{SHORT_NAMES[pair.predicted]}\n({pair.count})", fontsize=8, ha="right",
                 va="center")
    fig.suptitle(f"{model}: most confused pairs (true → predicted, confidence)", fontsize=11)
    return _save(fig, path)


def reliability_diagram(curves: Mapping[str, Reliability], path: Path) -> Path:
    """Accuracy against mean confidence per bin, one panel per model; bar width ∝ images."""
    fig = Figure(figsize=(4.2 * max(len(curves), 1), 4.4))
    for i, (name, rel) in enumerate(curves.items()):
        ax = fig.add_subplot(1, max(len(curves), 1), i + 1)
        edges = np.asarray(rel.edges)
        centers = (edges[:-1] + edges[1:]) / 2
        acc = np.array([a if a is not None else np.nan for a in rel.accuracy])
        conf = np.array([c if c is not None else np.nan for c in rel.confidence])
        ax.bar(centers, np.nan_to_num(acc), width=edges[1] - edges[0], edgecolor="black",
               alpha=0.7, label="accuracy in bin")
        ax.plot(conf, acc, "o", color="tab:red", markersize=4, label="(mean confidence, accuracy)")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        share = np.asarray(rel.counts) / max(sum(rel.counts), 1)
        ax2 = ax.twinx()
        ax2.step(edges[:-1], share, where="post", color="tab:green", alpha=0.6)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("share of images (green)", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE {rel.ece:.2%}")
        ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)
