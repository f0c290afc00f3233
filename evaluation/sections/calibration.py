"""Calibration: is a 90% answer right 90% of the time? ECE, NLL, mean confidence against
accuracy, and the reliability diagrams."""

from __future__ import annotations

import numpy as np

from evaluation.document import Bullets, Image, Section
from evaluation.metrics import ECE_BINS
from evaluation.run import Evaluation, ModelResult
from evaluation.sections.formatting import pct

RELIABILITY_CAPTION = (
    "Reliability diagrams, one per model. Top: the blue bars are the accuracy of the answers "
    "in each confidence bin, the red dots each bin's mean confidence (x) and accuracy (y); "
    "bars below the dashed diagonal mean over-confidence. Bottom: the grey bars are the "
    "share of the images that fall in each bin."
)


def _line(name: str, r: ModelResult) -> str:
    m = r.metrics
    mean_conf = float(np.mean(r.served.confidence)) if len(r.served.confidence) else 0.0
    lean = "over-confident" if mean_conf > m.accuracy.estimate else "under-confident"
    line = (
        f"{name}: ECE {pct(m.ece)}, NLL {m.nll:.4f}; mean confidence "
        f"{pct(mean_conf)} against accuracy {pct(m.accuracy.estimate)} (on average {lean})."
    )
    temperature = r.info.temperature if r.info else None
    if temperature is not None and temperature != 1.0:
        line += (
            f" Its probabilities are temperature-scaled (T = {temperature:g}, folded "
            "into the ONNX graph)."
        )
    return line


def section(ev: Evaluation, figures: dict[str, str]) -> Section:
    return Section(
        "Calibration",
        [
            "Is a 90% answer right 90% of the time? Confidences are grouped in "
            f"{ECE_BINS} equal-width bins; ECE is the image-weighted gap between each bin's "
            "accuracy and its mean confidence.",
            Bullets([_line(n, r) for n, r in ev.models.items()]),
            Image(figures["reliability"], RELIABILITY_CAPTION),
        ],
    )
