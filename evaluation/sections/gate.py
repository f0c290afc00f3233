"""Gate: the promotion gate's decision, the numbers, and the rule that decided."""

from __future__ import annotations

from evaluation.document import Block, Bullets, Section, Table
from evaluation.gate import GateDecision

RESULT = {True: "pass", False: "**fail**", None: "not applicable"}


def section(decision: GateDecision) -> Section:
    d, r = decision, decision.rule
    blocks: list[Block] = [
        f"**Verdict: {d.verdict}** (exit code {d.exit_code}) for {d.model}: candidate "
        f"version {d.candidate or '—'} against production version {d.production or '—'}. "
        f"{d.reason}."
    ]
    if d.checks:
        blocks.append(
            Table(
                ["check", "rule", "production", "candidate", "result"],
                [[c.name, c.rule, c.production, c.candidate, RESULT[c.passed]] for c in d.checks],
                "Every check must pass (or not apply) to promote.",
            )
        )
    blocks += [
        "The rule (evaluation/gate.py), the same for every model:",
        Bullets(
            [
                f"at least {r.min_images:,} labelled images, else undecided (exit 2);",
                f"accuracy non-inferior: the {r.confidence:.0%} one-sided lower bound of "
                f"accuracy(candidate) − accuracy(production), paired bootstrap on the same "
                f"images, above −{r.accuracy_margin * 100:.2f} percentage points;",
                f"calibration: ECE(candidate) ≤ ECE(production) + {r.ece_margin * 100:.2f} pp;",
                f"hardest class: on production's lowest-accuracy class, the candidate loses at "
                f"most {r.hardest_class_margin * 100:.2f} pp;",
                f"live agreement, when the service shadowed at least {r.min_shadow_images:,} "
                f"images to this candidate: at least {r.agreement_floor:.0%} predicted alike;",
                "exit 0 promote, 1 reject, 2 could not decide (service error, too few images).",
            ]
        ),
    ]
    return Section("Gate", blocks)
