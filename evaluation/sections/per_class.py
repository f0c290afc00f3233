"""Per class: accuracy of every model side by side with the study's, precision and F1, and
each model's most frequent confusions."""

from __future__ import annotations

import numpy as np

from evaluation.document import Block, Image, Section, Table
from evaluation.run import Evaluation
from evaluation.sections.formatting import pct
from fmnist import study
from fmnist.dataset import CLASS_NAMES


def _confused_pairs_table(ev: Evaluation, name: str) -> Table:
    return Table(
        ["true class", "predicted as", "images", "share of the true class"],
        [
            [
                CLASS_NAMES[p.true],
                CLASS_NAMES[p.predicted],
                f"{p.count:,}",
                pct(p.share_of_true, 1),
            ]
            for p in ev.models[name].metrics.confused_pairs
        ],
        f"{name}: the most frequent confusions.",
    )


def section(ev: Evaluation, figures: dict[str, str]) -> Section:
    """One table of per-class accuracy (every model side by side, with the study's), one of
    precision and F1, so that three models still fit the page."""
    names = list(ev.models)
    accuracy_rows, quality_rows = [], []
    for i, cls in enumerate(CLASS_NAMES):
        per_class = [ev.models[n].metrics.per_class[i] for n in names]
        accuracy_rows.append(
            [cls, f"{int(np.sum(ev.labels == i)):,}", pct(study.PER_CLASS_ACCURACY[cls], 1)]
            + [pct(s.accuracy, 1) for s in per_class]
        )
        quality_rows.append([cls] + [f"{pct(s.precision, 1)} / {pct(s.f1, 1)}" for s in per_class])
    blocks: list[Block] = [
        Table(
            ["class", "images", "study acc.", *(f"{n} acc." for n in names)],
            accuracy_rows,
            "Per-class accuracy is the recall: the share of the class's images the model "
            "labels correctly (the study's definition; its table does not say which of "
            "baseline and deeper it describes).",
        ),
        Table(
            ["class", *(f"{n} precision / F1" for n in names)],
            quality_rows,
            "Precision: the share of the images labelled as the class that are the class. "
            "F1: the harmonic mean of precision and per-class accuracy.",
        ),
        Image(
            figures["per_class"],
            "Per-class accuracy of each served model; black ticks: the study's per-class table.",
        ),
    ]
    blocks += [_confused_pairs_table(ev, n) for n in names]
    return Section("Per class", blocks)
