"""Metrics computed from what the service answered: accuracy with a bootstrap CI, top-2,
per-class scores, confusion matrix, calibration (ECE, NLL, reliability data), a paired
exact McNemar test between every two models with Holm's correction over all the pairs,
and serving skew against in-process onnxruntime.

Everything takes plain numpy arrays: ``y_true`` (N,) int labels, ``y_pred`` (N,) int
predictions, ``probs`` (N, C) probabilities.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from fmnist.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.metrics import ECE_BINS, Reliability, reliability

ALPHA = 0.05  # family-wise significance level of the paired tests (after Holm)
BOOTSTRAP_RESAMPLES = 10_000
SKEW_TOLERANCE = 1e-4  # max |Δ probability| still counted as "the same answer"


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float = 0.95

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def accuracy_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Accuracy with a percentile bootstrap interval.

    Resampling N items with replacement and counting the correct ones is exactly a
    Binomial(N, accuracy) draw, so the bootstrap is drawn that way: same distribution, no
    (resamples × N) index matrix.
    """
    correct = np.asarray(y_true) == np.asarray(y_pred)
    n = len(correct)
    if n == 0:
        raise ValueError("accuracy of an empty set is undefined")
    acc = float(correct.mean())
    draws = np.random.default_rng(seed).binomial(n, acc, size=resamples) / n
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(acc, float(low), float(high), level)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = 2) -> float:
    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(probs.shape[1])))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


@dataclass(frozen=True)
class ClassScores:
    name: str
    support: int
    accuracy: float  # correct / support: the study's "per-class accuracy" (= recall)
    precision: float
    recall: float
    f1: float


def per_class_scores(
    y_true: np.ndarray, y_pred: np.ndarray, names: tuple[str, ...] = CLASS_NAMES
) -> list[ClassScores]:
    labels = np.arange(len(names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return [
        ClassScores(
            names[i],
            int(support[i]),
            float(recall[i]),
            float(precision[i]),
            float(recall[i]),
            float(f1[i]),
        )
        for i in labels
    ]


@dataclass(frozen=True)
class ConfusedPair:
    true: int
    predicted: int
    count: int
    share_of_true: float  # count / images of the true class


def most_confused_pairs(cm: np.ndarray, top: int = 5) -> list[ConfusedPair]:
    """The largest off-diagonal cells, largest first (ties: lower true, then pred index)."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.lexsort((np.arange(off.size), -off.ravel()))
    rows = cm.sum(axis=1)
    pairs = []
    for flat in order[:top]:
        t, p = divmod(int(flat), cm.shape[1])
        if off[t, p] == 0:
            break
        pairs.append(ConfusedPair(t, p, int(off[t, p]), float(off[t, p] / max(rows[t], 1))))
    return pairs


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray, eps: float = 1e-12) -> float:
    """Mean −log p(true class); probabilities clipped at ``eps`` so one 0 is not infinite."""
    p_true = np.asarray(probs, dtype=np.float64)[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(p_true, eps, 1.0))))


@dataclass(frozen=True)
class ModelMetrics:
    images: int
    accuracy: Interval
    top2_accuracy: float
    nll: float
    ece: float
    confusion: np.ndarray
    per_class: list[ClassScores]
    confused_pairs: list[ConfusedPair]
    reliability: Reliability

    def hardest_class(self) -> ClassScores:
        return min(self.per_class, key=lambda c: c.accuracy if c.support else float("inf"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["confusion"] = self.confusion.tolist()
        out["confused_pairs"] = [
            {
                **asdict(p),
                "true_name": CLASS_NAMES[p.true],
                "predicted_name": CLASS_NAMES[p.predicted],
            }
            for p in self.confused_pairs
        ]
        return out


def model_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, probs: np.ndarray, seed: int = 0
) -> ModelMetrics:
    cm = confusion(y_true, y_pred)
    rel = reliability(y_true, y_pred, confidence, bins=ECE_BINS)
    return ModelMetrics(
        images=len(y_true),
        accuracy=accuracy_ci(y_true, y_pred, seed=seed),
        top2_accuracy=top_k_accuracy(y_true, probs, k=2),
        nll=negative_log_likelihood(y_true, probs),
        ece=rel.ece,
        confusion=cm,
        per_class=per_class_scores(y_true, y_pred),
        confused_pairs=most_confused_pairs(cm),
        reliability=rel,
    )


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same images. ``only_a``: a right and b wrong; ``only_b``: vice versa."""

    model_a: str
    model_b: str
    both_right: int
    only_a: int
    only_b: int
    both_wrong: int
    p_value: float  # exact two-sided McNemar (binomial test on the discordant pairs)
    # Holm-adjusted over every pair compared in the same run (= p_value for a single pair)
    p_value_holm: float
    agreement: float  # share of images where both predict the same class
    difference: Interval  # accuracy(a) − accuracy(b), paired bootstrap

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "discordant": self.discordant}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under H0 each discordant pair is a fair coin."""
    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)


def compare_models(
    name_a: str,
    pred_a: np.ndarray,
    name_b: str,
    pred_b: np.ndarray,
    y_true: np.ndarray,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    right_a, right_b = pred_a == y_true, pred_b == y_true
    cells = np.array(
        [
            np.sum(right_a & right_b),
            np.sum(right_a & ~right_b),
            np.sum(~right_a & right_b),
            np.sum(~right_a & ~right_b),
        ]
    )
    n = int(cells.sum())
    p_value = mcnemar_exact(int(cells[1]), int(cells[2]))
    # Resampling image pairs with replacement = a multinomial draw over the four cells.
    draws = np.random.default_rng(seed).multinomial(n, cells / n, size=resamples)
    diffs = (draws[:, 1] - draws[:, 2]) / n
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return PairedComparison(
        model_a=name_a,
        model_b=name_b,
        both_right=int(cells[0]),
        only_a=int(cells[1]),
        only_b=int(cells[2]),
        both_wrong=int(cells[3]),
        p_value=p_value,
        p_value_holm=p_value,  # a family of one; compare_every_pair adjusts for more
        agreement=float(np.mean(pred_a == pred_b)),
        difference=Interval(float((cells[1] - cells[2]) / n), float(low), float(high), level),
    )


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    The k-th smallest of m p-values is multiplied by (m − k + 1), capped at 1, and made
    non-decreasing in rank; rejecting every hypothesis whose adjusted p is below α keeps
    the chance of any false rejection at α (Holm 1979).
    """
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_every_pair(
    predictions: Mapping[str, np.ndarray], y_true: np.ndarray, seed: int = 0
) -> list[PairedComparison]:
    """:func:`compare_models` on every two models (in the mapping's order), Holm-adjusted."""
    comparisons = [
        compare_models(a, predictions[a], b, predictions[b], y_true, seed=seed)
        for a, b in itertools.combinations(predictions, 2)
    ]
    adjusted = holm_adjusted([c.p_value for c in comparisons])
    return [replace(c, p_value_holm=p) for c, p in zip(comparisons, adjusted, strict=True)]


@dataclass(frozen=True)
class ServingSkew:
    """Served answers vs the same ONNX file run in-process."""

    images: int
    argmax_mismatches: int
    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    served_sha256: str | None
    local_sha256: str

    @property
    def same_file(self) -> bool | None:
        return None if self.served_sha256 is None else self.served_sha256 == self.local_sha256

    @property
    def ok(self) -> bool:
        return self.argmax_mismatches == 0 and self.max_abs_prob_diff <= SKEW_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "same_file": self.same_file,
            "ok": self.ok,
            "tolerance": SKEW_TOLERANCE,
        }


def serving_skew(
    served_index: np.ndarray,
    served_probs: np.ndarray,
    local_probs: np.ndarray,
    served_sha256: str | None,
    local_sha256: str,
) -> ServingSkew:
    diff = np.abs(np.asarray(served_probs, np.float64) - np.asarray(local_probs, np.float64))
    return ServingSkew(
        images=len(served_index),
        argmax_mismatches=int(np.sum(served_index != np.argmax(local_probs, axis=1))),
        max_abs_prob_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_prob_diff=float(diff.mean()) if diff.size else 0.0,
        served_sha256=served_sha256,
        local_sha256=local_sha256,
    )
