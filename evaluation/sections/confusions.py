"""Confusions and mistakes: each model's confusion matrix, its most confident mistakes and
examples of its most frequent confusions (figures only)."""

from __future__ import annotations

from evaluation.document import Block, Image, Section
from evaluation.run import Evaluation


def section(ev: Evaluation, figures: dict[str, str]) -> Section:
    blocks: list[Block] = []
    for n in ev.models:
        blocks += [
            Image(
                figures[f"confusion_{n}"],
                f"{n}: confusion matrix, each row normalised to 100% of its true class.",
            ),
            Image(
                figures[f"mistakes_{n}"],
                f"{n}: the mistakes it was most sure of "
                "(#test index, true and predicted class, confidence).",
            ),
            Image(figures[f"pairs_{n}"], f"{n}: examples of its three most frequent confusions."),
        ]
    return Section("Confusions and mistakes", blocks)
