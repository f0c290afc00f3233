"""Per class, side by side: every model's per-class accuracy with the study's, as a table
and a figure (each model's precision and F1 are in its own section)."""

from __future__ import annotations

import numpy as np

from evaluation.document import Image, Section, Table
from evaluation.run import Evaluation
from evaluation.sections.formatting import pct
from fmnist import study
from fmnist.dataset import CLASS_NAMES

TITLE = "Per-class accuracy side by side"


def section(ev: Evaluation, figures: dict[str, str]) -> Section:
    names = list(ev.models)
    rows = [
        [cls, f"{int(np.sum(ev.labels == i)):,}", pct(study.PER_CLASS_ACCURACY[cls], 1)]
        + [pct(ev.models[n].metrics.per_class[i].accuracy, 1) for n in names]
        for i, cls in enumerate(CLASS_NAMES)
    ]
    return Section(
        TITLE,
        [
            Table(
                ["class", "images", "study acc.", *(f"{n} acc." for n in names)],
                rows,
                "Per-class accuracy is the recall: the share of the class's images the model "
                "labels correctly (the study's definition; its table does not say which of "
                "baseline and deeper it describes).",
            ),
            Image(
                figures["per_class"],
                "Per-class accuracy of each served model, on an axis from 0 to 100%; black "
                "ticks: the study's per-class table.",
            ),
        ],
    )
