"""The evaluation report's figures say what they show: confidences precise enough to rank
the mistakes, the contract's class names, a per-class axis from 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import plots
from evaluation.metrics import model_metrics
from fmnist.dataset import CLASS_NAMES


@pytest.mark.parametrize(
    ("p", "label"),
    [
        (0.62, "62.0%"),
        (0.999, "99.90%"),
        (0.9997, "99.970%"),
        (0.99999912, "99.999912%"),
        (1.0, "100%"),
        (1 - 1e-12, ">99.9999999%"),
    ],
)
def test_confidence_label_keeps_two_digits_of_what_is_left(p: float, label: str) -> None:
    assert plots.confidence_label(p) == label


def test_confidence_labels_rank_near_certain_mistakes() -> None:
    """What the committed galleries showed as 24 × "100%": each tile now reads differently,
    and reading the labels as numbers gives the gallery's order back."""
    rng = np.random.default_rng(0)
    n = 200
    y_true = np.arange(n) % 10
    y_pred = (y_true + 1) % 10  # every image a mistake
    # 99.9 % … 99.99999 %, as float32 (what the service's JSON carries)
    confidence = (1 - 10 ** rng.uniform(-7, -3, n)).astype(np.float32).astype(np.float64)
    confidence[:3] = 1.0  # float32 cannot tell these from 1
    chosen, titles = plots.most_confident_mistakes(y_true, y_pred, confidence, 24)
    assert list(chosen) == list(np.argsort(-confidence, kind="stable")[:24])
    shown = [float(t.split()[1].rstrip("%")) for t in titles]
    assert shown[:3] == [100.0] * 3
    rest = shown[3:]
    distinct = len(set(confidence[chosen[3:]]))
    assert len(set(rest)) == distinct and rest == sorted(rest, reverse=True), titles
    first = titles[3].splitlines()
    assert first[0].startswith(f"#{chosen[3]}  99.9999")
    assert first[1:] == [
        f"true: {CLASS_NAMES[y_true[chosen[3]]]}",
        f"pred: {CLASS_NAMES[y_pred[chosen[3]]]}",
    ]


def test_confidence_labels_add_digits_only_where_needed() -> None:
    assert plots.confidence_labels([0.9, 0.8]) == ["90.0%", "80.0%"]
    assert plots.confidence_labels([0.99991, 0.99992]) == ["99.9910%", "99.9920%"]
    assert plots.confidence_labels([0.9999121, 0.9999123]) == ["99.99121%", "99.99123%"]
    assert plots.confidence_labels([0.5, 0.5]) == ["50.0%", "50.0%"]  # equal stays equal


def test_galleries_and_per_class_plot_render(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 10
    pred = np.where(rng.random(300) < 0.8, labels, 0)  # T-shirt/top takes the mistakes
    probs = rng.dirichlet(np.ones(10), 300) * 0.01
    probs[np.arange(300), pred] += 0.99
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    metrics = model_metrics(labels, pred, probs.max(1), probs)
    path = plots.mistakes_gallery(
        images, labels, pred, probs.max(1), "m", tmp_path / "mistakes.png"
    )
    with Image.open(path) as img:
        assert img.width > 600 and img.height > 200
    pairs = plots.confused_pair_gallery(
        images, labels, pred, probs.max(1), metrics.confused_pairs[:3], "m", tmp_path / "p.png"
    )
    assert pairs.stat().st_size > 1000
    assert plots.per_class_accuracy(
        {"m": metrics}, dict.fromkeys(CLASS_NAMES, 0.9), tmp_path / "pc.png"
    ).is_file()


def test_per_class_axis_starts_at_zero_with_the_contracts_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Read the drawn figure itself: the saved Figure is captured on its way to disk."""
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or path)
    labels = np.arange(100) % 10
    pred = labels.copy()
    pred[labels == 6] = 0  # Shirt always wrong: the lowest bar is 0 %
    pred[labels == 5] = np.where(np.arange(10) < 9, 5, 7)  # Sandal at 90 %
    probs = np.eye(10)[pred]
    metrics = model_metrics(labels, pred, probs.max(1), probs)
    plots.per_class_accuracy({"m": metrics}, dict.fromkeys(CLASS_NAMES, 0.9), tmp_path / "x")
    plots.confusion_heatmap(metrics.confusion, "m", tmp_path / "y")
    per_class, confusion = (fig.axes[0] for fig in saved)
    assert per_class.get_ylim() == (0.0, 100.0)
    assert [t.get_text() for t in per_class.get_xticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in confusion.get_yticklabels()] == list(CLASS_NAMES)
    assert "T-shirt/top" in [t.get_text() for t in confusion.get_xticklabels()]
