"""Report figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state,
no display needed). Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evaluation.metrics import ConfusedPair, ModelMetrics, Reliability
from fmnist.dataset import CLASS_NAMES

DPI = 110
MAX_CONFIDENCE_DECIMALS = 7  # float32 answers carry about 7 significant digits


def confidence_label(p: float, extra_digits: int = 0) -> str:
    """A confidence in percent with enough decimals to rank near-certain mistakes.

    Two significant digits of what is left to the other classes (``1 − p``) stay visible,
    plus ``extra_digits``: 0.9997 → "99.970%", 0.99999912 → "99.999912%", 0.62 → "62.0%".
    Only an answer of exactly 1 (as far as the float32 the service sends can tell) reads
    "100%".
    """
    if p >= 1.0:
        return "100%"
    gap = (1.0 - p) * 100  # percentage points left to the other classes
    decimals = max(1, 1 - math.floor(math.log10(gap))) + extra_digits
    decimals = min(MAX_CONFIDENCE_DECIMALS, decimals)
    text = f"{p * 100:.{decimals}f}"
    if float(text) >= 100:  # rounding at the cap reached 100: say "above" instead
        return f">{100 - 10**-MAX_CONFIDENCE_DECIMALS:.{MAX_CONFIDENCE_DECIMALS}f}%"
    return f"{text}%"


def confidence_labels(values: Sequence[float] | np.ndarray) -> list[str]:
    """:func:`confidence_label` of each value, with as many extra digits (the same for all)
    as it takes for different confidences to read differently, up to the float32 limit."""
    numbers = [float(v) for v in values]
    labels: list[str] = []
    for extra in range(MAX_CONFIDENCE_DECIMALS + 1):
        labels = [confidence_label(v, extra) for v in numbers]
        seen: dict[str, float] = {}
        if all(seen.setdefault(text, v) == v for text, v in zip(labels, numbers, strict=True)):
            break
    return labels


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
                ax.text(
                    p,
                    t,
                    f"{share[t, p]:.0f}" if share[t, p] >= 1 else "<1",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[t, p] > 55 else "black",
                )
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
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
    ax.scatter(
        x,
        [study[n] * 100 for n in CLASS_NAMES],
        marker="_",
        s=400,
        color="black",
        linewidths=2,
        zorder=3,
        label="study",
    )
    ax.set_ylim(0, 100)  # from 0: a cut axis would make the gaps between classes look larger
    ax.set_xticks(x, CLASS_NAMES, rotation=30, ha="right")
    ax.set_ylabel("accuracy on the class (%)")
    ax.set_title("Per-class accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=len(metrics) + 1,
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path)


CELL_W = 36  # mosaic cell width in pixels: a 28-pixel image and its margins
LINE_H = 4  # pixels per title line: 1.5 in per 36-pixel cell makes 7-pt text about 3.5 px


def _mosaic(
    ax: Axes,
    images: np.ndarray,
    titles: Sequence[str],
    cols: int,
    lines: int,
    row_labels: Sequence[str] = (),
) -> None:
    """Draw images as one picture with a title above each: one imshow, not one axes each.

    Dozens of small axes make matplotlib slow (seconds per figure); one mosaic is fast.
    """
    cell_h = 28 + 4 + LINE_H * lines
    rows = max(1, -(-len(images) // cols), len(row_labels))
    canvas = np.zeros((rows * cell_h, cols * CELL_W), dtype=np.uint8)  # 0 = white (gray_r)
    for k, (image, title) in enumerate(zip(images, titles, strict=True)):
        r, c = divmod(k, cols)
        y, x = r * cell_h + cell_h - 30, c * CELL_W + 4
        canvas[y : y + 28, x : x + 28] = image
        ax.text(x + 14, y - 1, title, ha="center", va="bottom", fontsize=7)
    for r, label in enumerate(row_labels):
        ax.text(-3, r * cell_h + cell_h - 16, label, ha="right", va="center", fontsize=9)
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")


def _gallery_figure(cols: int, rows: int, lines: int, label_width: float = 0.0) -> Figure:
    inch = 1.5 / CELL_W
    return Figure(figsize=(cols * 1.5 + label_width, rows * (32 + LINE_H * lines) * inch + 0.5))


def most_confident_mistakes(
    y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, count: int = 24
) -> tuple[np.ndarray, list[str]]:
    """Test indices of the ``count`` most confident mistakes (most confident first) and
    their tile titles: index, confidence (:func:`confidence_label`), true and predicted."""
    wrong = np.flatnonzero(y_true != y_pred)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    titles = [
        f"#{i}  {shown}\ntrue: {CLASS_NAMES[y_true[i]]}\npred: {CLASS_NAMES[y_pred[i]]}"
        for i, shown in zip(chosen, confidence_labels(confidence[chosen]), strict=True)
    ]
    return chosen, titles


def mistakes_gallery(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    model: str,
    path: Path,
    count: int = 24,
    cols: int = 8,
) -> Path:
    """The ``count`` mistakes the model was most sure of, most confident first."""
    chosen, titles = most_confident_mistakes(y_true, y_pred, confidence, count)
    fig = _gallery_figure(cols, max(1, -(-len(chosen) // cols)), 3)
    _mosaic(fig.add_subplot(), images[chosen], titles, cols, 3)
    fig.suptitle(
        f"{model}: the {len(chosen)} most confident mistakes (test index, confidence)", fontsize=11
    )
    return _save(fig, path)


def confused_pair_gallery(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    pairs: Sequence[ConfusedPair],
    model: str,
    path: Path,
    per_pair: int = 8,
) -> Path:
    """One row per confused pair (true → predicted), its most confident examples."""
    fig = _gallery_figure(per_pair, max(1, len(pairs)), 1, label_width=1.2)
    tiles: list[np.ndarray] = []
    titles: list[str] = []
    for pair in pairs:
        hits = np.flatnonzero((y_true == pair.true) & (y_pred == pair.predicted))
        chosen = hits[np.argsort(-confidence[hits], kind="stable")][:per_pair]
        shown = confidence_labels(confidence[chosen])
        for slot in range(per_pair):  # a short row is padded with blanks
            i = chosen[slot] if slot < len(chosen) else None
            tiles.append(images[i] if i is not None else np.zeros((28, 28), np.uint8))
            titles.append(f"#{i}  {shown[slot]}" if i is not None else "")
    labels = [
        f"{CLASS_NAMES[p.true]}\n→ {CLASS_NAMES[p.predicted]}\n({p.count} images)" for p in pairs
    ]
    _mosaic(fig.add_subplot(), np.asarray(tiles).reshape(-1, 28, 28), titles, per_pair, 1, labels)
    fig.suptitle(
        f"{model}: most confused pairs, true → predicted (test index, confidence)", fontsize=11
    )
    return _save(fig, path)


def reliability_diagram(curves: Mapping[str, Reliability], path: Path) -> Path:
    """Per model: accuracy against confidence per bin (top), share of images per bin (below)."""
    n = max(len(curves), 1)
    fig = Figure(figsize=(4.6 * n, 5.6))
    grid = fig.add_gridspec(2, n, height_ratios=[3, 1], hspace=0.08)
    for i, (name, rel) in enumerate(curves.items()):
        top = fig.add_subplot(grid[0, i])
        below = fig.add_subplot(grid[1, i], sharex=top)
        edges = np.asarray(rel.edges)
        width = edges[1] - edges[0]
        acc = np.array([np.nan if a is None else a for a in rel.accuracy])
        conf = np.array([np.nan if c is None else c for c in rel.confidence])
        top.bar(
            edges[:-1],
            np.nan_to_num(acc),
            width=width,
            align="edge",
            edgecolor="black",
            color="tab:blue",
            alpha=0.75,
            label="accuracy in bin",
        )
        top.plot(
            conf, acc, "o", color="tab:red", markersize=4, label="bin: mean confidence, accuracy"
        )
        top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{name}: ECE {rel.ece:.2%}")
        top.legend(loc="upper left", fontsize=7)
        top.tick_params(labelbottom=False)
        share = np.asarray(rel.counts) / max(sum(rel.counts), 1)
        below.bar(
            edges[:-1], share * 100, width=width, align="edge", color="tab:gray", edgecolor="black"
        )
        below.set_xlabel("confidence")
        below.set_ylabel("% of images\nin the bin")
    return _save(fig, path)
