"""The report's sections that hold models against the study and against each other."""

from __future__ import annotations

from fmnist import study
from fmnist.registry import study_models
from evaluation.document import Block, Bullets, Section, Table
from evaluation.metrics import PairedComparison, accuracy_ci
from evaluation.report_fmt import ALPHA, p_value, pct, pp, with_ci
from evaluation.results import Evaluation
from fmnist.dataset import CLASS_NAMES


def in_study(*models: str) -> bool:
    return all(m in study_models() for m in models)


def study_section(ev: Evaluation) -> Section:
    blocks: list[Block] = []
    rows = []
    for name, r in ev.models.items():
        if not in_study(name):
            continue
        claimed = study.TEST_ACCURACY.get(name)
        acc = r.metrics.accuracy
        verdict = (
            "no study number"
            if claimed is None
            else (
                "consistent (inside the CI)"
                if acc.contains(claimed)
                else ("better than the study" if acc.low > claimed else "worse than the study")
            )
        )
        hardest = r.metrics.hardest_class()
        shirt = CLASS_NAMES.index(study.HARDEST_CLASS)
        mask = ev.labels == shirt
        shirt_ci = accuracy_ci(ev.labels[mask], r.served.class_index[mask]) if mask.any() else None
        rows.append(
            [
                name,
                pct(claimed),
                pct(acc.estimate),
                verdict,
                f"{hardest.name} ({pct(hardest.accuracy, 1)})",
                "n/a" if shirt_ci is None else with_ci(shirt_ci, 1),
            ]
        )
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
                    f"**{n}** is {study.BEYOND}; its numbers are in the headline, per-class, "
                    "calibration and comparison sections."
                    for n in beyond
                ]
            )
        )
    blocks.append("The study's own text does not agree with itself in places:")
    blocks.append(Bullets(list(study.INCONSISTENCIES)))
    return Section("Against the study", blocks)


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error over all the tests), in order."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(c: PairedComparison) -> str:
    d = c.difference
    interval = f"{pp(d.estimate)}, 95% CI [{pp(d.low)}, {pp(d.high)}]"
    if c.p_value < ALPHA:
        better, worse = (c.model_a, c.model_b) if c.only_a > c.only_b else (c.model_b, c.model_a)
        return (
            f"**The data do not support 'the two models perform the same'.** {better} is "
            f"right on {max(c.only_a, c.only_b):,} images where {worse} is wrong, and "
            f"{worse} on only {min(c.only_a, c.only_b):,} the other way (exact McNemar "
            f"{p_value(c.p_value)}); accuracy {c.model_a} − {c.model_b}: {interval}."
        )
    widest = max(abs(d.low), abs(d.high))
    return (
        f"**The data are consistent with 'the two models perform the same'** (exact "
        f"McNemar {p_value(c.p_value)}; accuracy {c.model_a} − {c.model_b}: {interval}). "
        f"That is no evidence of a difference, not proof of equality: differences of up "
        f"to {widest * 100:.2f} percentage points are not ruled out."
    )


def _scope(c: PairedComparison) -> str:
    if in_study(c.model_a, c.model_b):
        return f"the study's claim that {study.CLAIM_SAME}"
    return "beyond the study (it compared only baseline and deeper)"


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else "< 0.0001"


def overview(comparisons: list[PairedComparison], adjusted: list[float]) -> Table:
    rows = [
        [
            f"{c.model_a} vs {c.model_b}",
            f"{pp(c.difference.estimate)} [{pp(c.difference.low)}, {pp(c.difference.high)}]",
            f"{c.only_a:,} / {c.only_b:,}",
            pct(c.agreement),
            _p(c.p_value),
            _p(holm),
            "differ" if holm < ALPHA else "no evidence of a difference",
            "yes" if in_study(c.model_a, c.model_b) else "beyond the study",
        ]
        for c, holm in zip(comparisons, adjusted, strict=True)
    ]
    return Table(
        [
            "pair (a vs b)",
            "accuracy a − b [95% CI]",
            "right only under a / b",
            "same prediction",
            "McNemar p",
            "Holm-adjusted p",
            "verdict (Holm, 5%)",
            "in the study",
        ],
        rows,
        f"Every pair of evaluated models on the same images. With {len(comparisons)} tests, "
        "the Holm-adjusted p keeps the chance of any false 'they differ' at 5%.",
    )


def paired_section(ev: Evaluation) -> Section:
    title = "Do the models perform the same?"
    if not ev.comparisons:
        return Section(title, ["Only one model was evaluated; the paired test needs two."])
    blocks: list[Block] = []
    adjusted = holm_adjusted([c.p_value for c in ev.comparisons])
    several = len(ev.comparisons) > 1
    if several:
        blocks.append(overview(ev.comparisons, adjusted))
    for c, holm in zip(ev.comparisons, adjusted, strict=True):
        if several:
            blocks.append(f"**{c.model_a} vs {c.model_b}**: {_scope(c)}.")
        blocks.append(
            Table(
                ["", f"{c.model_b} right", f"{c.model_b} wrong"],
                [
                    [f"{c.model_a} right", f"{c.both_right:,}", f"{c.only_a:,}"],
                    [f"{c.model_a} wrong", f"{c.only_b:,}", f"{c.both_wrong:,}"],
                ],
                f"{c.model_a} vs {c.model_b} on the same images. McNemar's test uses only the "
                "off-diagonal (discordant) cells.",
            )
        )
        blocks.append(verdict(c))
        if several and c.p_value < ALPHA <= holm:
            blocks.append(
                f"Corrected for the {len(ev.comparisons)} pairs tested (Holm), this "
                f"difference is not significant ({p_value(holm)})."
            )
        blocks.append(
            f"The two models predict the same class for {pct(c.agreement)} of the "
            f"images; {c.discordant:,} images are right under one model only. Equal "
            "accuracy would not mean equal predictions."
        )
    return Section(title, blocks)
