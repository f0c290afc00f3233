"""Do the models perform the same? Every pair's 2×2 table, exact McNemar test and paired
bootstrap interval, with the Holm-adjusted p-values (computed in evaluation.metrics) when
more than one pair was tested."""

from __future__ import annotations

from evaluation.document import Block, Section, Table
from evaluation.metrics import ALPHA, PairedComparison
from evaluation.run import Evaluation, in_study
from evaluation.sections.formatting import p_number, p_value, pct, pp
from fmnist import study

TITLE = "Do the models perform the same?"


def verdict(c: PairedComparison) -> str:
    """One pair's verdict at :data:`~evaluation.metrics.ALPHA`, before any correction."""
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


def overview(comparisons: list[PairedComparison]) -> Table:
    """Every pair in one table, judged on its Holm-adjusted p."""
    rows = [
        [
            f"{c.model_a} vs {c.model_b}",
            f"{pp(c.difference.estimate)} [{pp(c.difference.low)}, {pp(c.difference.high)}]",
            f"{c.only_a:,} / {c.only_b:,}",
            pct(c.agreement),
            p_number(c.p_value),
            p_number(c.p_value_holm),
            "differ" if c.p_value_holm < ALPHA else "no evidence of a difference",
            "yes" if in_study(c.model_a, c.model_b) else "beyond the study",
        ]
        for c in comparisons
    ]
    return Table(
        [
            "pair (a vs b)",
            "accuracy a − b [95% CI]",
            "right only under a / b",
            "same prediction",
            "McNemar p",
            "Holm-adjusted p",
            f"verdict (Holm, {ALPHA:.0%})",
            "in the study",
        ],
        rows,
        f"Every pair of evaluated models on the same images. With {len(comparisons)} tests, "
        f"the Holm-adjusted p keeps the chance of any false 'they differ' at {ALPHA:.0%}.",
    )


def _pair_table(c: PairedComparison) -> Table:
    return Table(
        ["", f"{c.model_b} right", f"{c.model_b} wrong"],
        [
            [f"{c.model_a} right", f"{c.both_right:,}", f"{c.only_a:,}"],
            [f"{c.model_a} wrong", f"{c.only_b:,}", f"{c.both_wrong:,}"],
        ],
        f"{c.model_a} vs {c.model_b} on the same images. McNemar's test uses only the "
        "off-diagonal (discordant) cells.",
    )


def section(ev: Evaluation) -> Section:
    if not ev.comparisons:
        return Section(TITLE, ["Only one model was evaluated; the paired test needs two."])
    blocks: list[Block] = []
    several = len(ev.comparisons) > 1
    if several:
        blocks.append(overview(ev.comparisons))
    for c in ev.comparisons:
        if several:
            blocks.append(f"**{c.model_a} vs {c.model_b}**: {_scope(c)}.")
        blocks.append(_pair_table(c))
        blocks.append(verdict(c))
        if several and c.p_value < ALPHA <= c.p_value_holm:
            blocks.append(
                f"Corrected for the {len(ev.comparisons)} pairs tested (Holm), this "
                f"difference is not significant ({p_value(c.p_value_holm)})."
            )
        blocks.append(
            f"The two models predict the same class for {pct(c.agreement)} of the "
            f"images; {c.discordant:,} images are right under one model only. Equal "
            "accuracy would not mean equal predictions."
        )
    return Section(TITLE, blocks)
