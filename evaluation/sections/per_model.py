"""One section per model: its per-class table, its confusion matrix with its most frequent
confusions (table and examples), and the mistakes it was most sure of, together, so that a
reader can follow one model without piecing it together from figures named in captions."""

from __future__ import annotations

import numpy as np

from evaluation.document import Block, Image, Section, Table
from evaluation.run import Evaluation, in_study
from evaluation.sections.formatting import pct, with_ci
from fmnist import study
from fmnist.dataset import CLASS_NAMES


def title(name: str) -> str:
    return f"Model: {name}"


def _overview(ev: Evaluation, name: str) -> str:
    r = ev.models[name]
    hardest = r.metrics.hardest_class()
    scope = (
        f"one of the study's models (study: {pct(study.TEST_ACCURACY[name])})"
        if in_study(name) and name in study.TEST_ACCURACY
        else study.BEYOND
    )
    return (
        f"**{name}**: {with_ci(r.metrics.accuracy)} accuracy on {r.metrics.images:,} images; "
        f"hardest class {hardest.name} at {pct(hardest.accuracy, 1)}; {scope}."
    )


def _per_class(ev: Evaluation, name: str) -> Section:
    scores = ev.models[name].metrics.per_class
    with_study = in_study(name)
    rows = [
        [
            cls,
            f"{int(np.sum(ev.labels == i)):,}",
            pct(scores[i].accuracy, 1),
            *([pct(study.PER_CLASS_ACCURACY[cls], 1)] if with_study else []),
            pct(scores[i].precision, 1),
            pct(scores[i].f1, 1),
        ]
        for i, cls in enumerate(CLASS_NAMES)
    ]
    header = ["class", "images", "accuracy", *(["study acc."] if with_study else [])]
    return Section(
        f"{name}: per class",
        [
            Table(
                [*header, "precision", "F1"],
                rows,
                f"{name}. Accuracy: the share of the class's images labelled correctly (the "
                "recall, the study's per-class measure). Precision: the share of the images "
                "labelled as the class that are the class. F1: their harmonic mean.",
            )
        ],
    )


def _confusions(ev: Evaluation, name: str, figures: dict[str, str]) -> Section:
    pairs = ev.models[name].metrics.confused_pairs
    blocks: list[Block] = [
        Image(
            figures[f"confusion_{name}"],
            f"{name}: confusion matrix, each row normalised to 100% of its true class.",
        )
    ]
    if pairs:
        blocks.append(
            Table(
                ["true class", "predicted as", "images", "share of the true class"],
                [
                    [
                        CLASS_NAMES[p.true],
                        CLASS_NAMES[p.predicted],
                        f"{p.count:,}",
                        pct(p.share_of_true, 1),
                    ]
                    for p in pairs
                ],
                f"{name}: the most frequent confusions.",
            )
        )
    else:
        blocks.append(f"{name} made no mistake on these images.")
    blocks.append(
        Image(
            figures[f"pairs_{name}"],
            f"{name}: examples of its three most frequent confusions, one row per pair "
            "(#test index, confidence), the most confident first.",
        )
    )
    return Section(f"{name}: confusions", blocks)


def _mistakes(name: str, figures: dict[str, str]) -> Section:
    return Section(
        f"{name}: most confident mistakes",
        [
            Image(
                figures[f"mistakes_{name}"],
                f"{name}: the mistakes it was most sure of (#test index, confidence, true and "
                "predicted class). Confidences carry as many digits as it takes to rank them; "
                "100% means the service answered exactly 1 (float32).",
            )
        ],
    )


def section(ev: Evaluation, name: str, figures: dict[str, str]) -> Section:
    return Section(
        title(name),
        [_overview(ev, name)],
        [_per_class(ev, name), _confusions(ev, name, figures), _mistakes(name, figures)],
    )
