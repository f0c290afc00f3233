"""Against the study: the study's models held against its published numbers, and where the
study's own text disagrees with itself."""

from __future__ import annotations

from evaluation.document import Block, Bullets, Section, Table
from evaluation.metrics import Interval, accuracy_ci
from evaluation.run import Evaluation, ModelResult, in_study
from evaluation.sections.formatting import pct, with_ci
from fmnist import study
from fmnist.dataset import CLASS_NAMES
from fmnist.registry import study_models


def _verdict(measured: Interval, claimed: float | None) -> str:
    if claimed is None:
        return "no study number"
    if measured.contains(claimed):
        return "consistent (inside the CI)"
    return "better than the study" if measured.low > claimed else "worse than the study"


def _row(ev: Evaluation, name: str, r: ModelResult) -> list[str]:
    claimed = study.TEST_ACCURACY.get(name)
    acc = r.metrics.accuracy
    hardest = r.metrics.hardest_class()
    mask = ev.labels == CLASS_NAMES.index(study.HARDEST_CLASS)
    hardest_ci = accuracy_ci(ev.labels[mask], r.served.class_index[mask]) if mask.any() else None
    return [
        name,
        pct(claimed),
        pct(acc.estimate),
        _verdict(acc, claimed),
        f"{hardest.name} ({pct(hardest.accuracy, 1)})",
        "n/a" if hardest_ci is None else with_ci(hardest_ci, 1),
    ]


def section(ev: Evaluation) -> Section:
    blocks: list[Block] = []
    rows = [_row(ev, name, r) for name, r in ev.models.items() if in_study(name)]
    if rows:
        blocks.append(
            Table(
                [
                    "model",
                    "study test acc.",
                    "measured",
                    "verdict",
                    "hardest class (measured)",
                    f"{study.HARDEST_CLASS} accuracy [95% CI]",
                ],
                rows,
                f"The study reports {pct(study.TEST_ACCURACY['baseline'])} for both models and "
                f"{study.HARDEST_CLASS} as the hardest class at "
                f"{pct(study.PER_CLASS_ACCURACY[study.HARDEST_CLASS], 1)}.",
            )
        )
    else:
        blocks.append(
            f"None of the evaluated models is one of the study's ({', '.join(study_models())})."
        )
    beyond = [n for n in ev.models if not in_study(n)]
    if beyond:
        blocks.append(
            Bullets(
                [
                    f"**{n}** is {study.BEYOND}; its numbers are in the headline, the "
                    "comparison of the models and its own section."
                    for n in beyond
                ]
            )
        )
    blocks.append("The study's own text does not agree with itself in places:")
    blocks.append(Bullets(list(study.INCONSISTENCIES)))
    return Section("Against the study", blocks)
