"""Numpy-only metrics that training and evaluation both compute: calibration.

Training fits and reports the improved model's temperature with these; evaluation audits
the served answers with the same code, so the two numbers can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal width over [0, 1]): images, mean confidence, accuracy."""

    edges: list[float]
    counts: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float


def reliability(
    y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS
) -> Reliability:
    """Expected calibration error: Σ_b (n_b / N) · |accuracy_b − confidence_b|.

    Bins are right-closed, (k/B, (k+1)/B], as in Guo et al. 2017; a confidence of exactly
    0 goes to the first bin.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(y_true) == np.asarray(y_pred)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    filled = counts > 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=filled)
    mean_acc = np.divide(hit_sum, counts, out=np.zeros(bins), where=filled)
    ece = float(np.sum(counts / counts.sum() * np.abs(mean_acc - mean_conf)))
    return Reliability(
        edges=[k / bins for k in range(bins + 1)],
        counts=counts.tolist(),
        confidence=[float(c) if f else None for c, f in zip(mean_conf, filled, strict=True)],
        accuracy=[float(a) if f else None for a, f in zip(mean_acc, filled, strict=True)],
        ece=ece,
    )
