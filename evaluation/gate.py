"""The promotion gate: the live paired audit of a model's candidate against its production
version decides whether the candidate may be promoted.

    fmnist-eval --url http://127.0.0.1:3000 --out reports/gate --gate baseline
    echo $?   # 0 promote, 1 reject, 2 could not decide

The test set goes through the live service twice, to ``baseline@production`` and
``baseline@candidate`` (the versions the service's aliases name now), and the rule below
decides. Every check must pass to promote:

1. **Enough images**: at least ``min_images`` labelled images (else: undecided, exit 2).
2. **Accuracy non-inferior**: the one-sided 95 % lower bound of accuracy(candidate) −
   accuracy(production), from the paired bootstrap over the same images the report uses,
   is above −``accuracy_margin`` (0.3 percentage points).
3. **Calibration not worse**: ECE(candidate) ≤ ECE(production) + ``ece_margin`` (1 pp).
4. **Hardest class not worse**: on production's hardest class (lowest accuracy), the
   candidate's accuracy ≥ production's − ``hardest_class_margin`` (2 pp).
5. **Live agreement** (only when the service has shadowed at least ``min_shadow_images``
   production requests on this candidate): the share of them where the candidate
   predicted production's class is at least ``agreement_floor`` (0.90). With less shadow
   data the check is reported as not applicable, and does not block.

A service that cannot be reached or answers wrongly is undecided (exit 2), never a reject.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evaluation.metrics import ModelMetrics, compare_models
from fmnist.prometheus import metric_total

PROMOTE, REJECT, UNDECIDED = "promote", "reject", "undecided"
EXIT_CODES = {PROMOTE: 0, REJECT: 1, UNDECIDED: 2}
SHADOW_METRIC = "fmnist_shadow_predictions_total"


@dataclass(frozen=True)
class GateRule:
    """The margins of the rule in the module's docstring (fractions, not percent)."""

    accuracy_margin: float = 0.003
    ece_margin: float = 0.01
    hardest_class_margin: float = 0.02
    agreement_floor: float = 0.90
    min_images: int = 500
    min_shadow_images: int = 100
    confidence: float = 0.95  # one-sided, for the accuracy bound


@dataclass(frozen=True)
class ShadowAgreement:
    """What the live service counted for one candidate version (fmnist_shadow_*)."""

    candidate: str
    agree: int
    disagree: int

    @property
    def images(self) -> int:
        return self.agree + self.disagree

    @property
    def rate(self) -> float | None:
        return self.agree / self.images if self.images else None


@dataclass(frozen=True)
class Check:
    name: str
    rule: str
    production: str
    candidate: str
    passed: bool | None  # None: not applicable (does not block)


@dataclass(frozen=True)
class GateDecision:
    model: str
    production: str  # the versions compared
    candidate: str
    verdict: str  # promote, reject, undecided
    reason: str  # one line: which check decided
    checks: list[Check] = field(default_factory=list)
    rule: GateRule = GateRule()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def shadow_agreement(metrics_text: str, model: str, candidate: str) -> ShadowAgreement:
    """The shadow agreement counters of ``model``'s ``candidate`` in a /metrics answer."""
    agree, disagree = (
        int(
            metric_total(metrics_text, SHADOW_METRIC, model=model, candidate=candidate, agreement=a)
        )
        for a in ("agree", "disagree")
    )
    return ShadowAgreement(candidate, agree, disagree)


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def decide(
    model: str,
    versions: tuple[str, str],
    labels: np.ndarray,
    predictions: tuple[np.ndarray, np.ndarray],
    metrics: tuple[ModelMetrics, ModelMetrics],
    shadow: ShadowAgreement | None,
    rule: GateRule = GateRule(),
    seed: int = 0,
) -> GateDecision:
    """Apply the rule to production's and the candidate's answers on the same images."""
    production, candidate = versions

    def verdict(outcome: str, reason: str, checks: list[Check]) -> GateDecision:
        return GateDecision(model, production, candidate, outcome, reason, checks, rule)

    if production == candidate:
        return verdict(
            UNDECIDED,
            f"{model} has no candidate other than its production version {production}",
            [],
        )
    n = len(labels)
    if n < rule.min_images:
        return verdict(
            UNDECIDED, f"{n} labelled images, fewer than the {rule.min_images} the rule needs", []
        )
    m_p, m_c = metrics
    # accuracy(candidate) − accuracy(production): a two-sided (1 − 2α) interval's low end
    # is the one-sided (1 − α) lower bound.
    paired = compare_models(
        "candidate",
        predictions[1],
        "production",
        predictions[0],
        labels,
        level=1 - 2 * (1 - rule.confidence),
        seed=seed,
    )
    low = paired.difference.low
    hardest = m_p.hardest_class()
    hard_c = next(c.accuracy for c in m_c.per_class if c.name == hardest.name)
    checks = [
        Check(
            "accuracy non-inferior",
            f"{rule.confidence:.0%} one-sided lower bound of candidate − production > "
            f"−{rule.accuracy_margin * 100:.2f} pp",
            _pct(m_p.accuracy.estimate),
            f"{_pct(m_c.accuracy.estimate)} (difference {paired.difference.estimate * 100:+.2f}"
            f" pp, lower bound {low * 100:+.2f} pp; {paired.only_a:,} / {paired.only_b:,} "
            "images right only under candidate / production)",
            low > -rule.accuracy_margin,
        ),
        Check(
            "calibration not worse",
            f"ECE(candidate) ≤ ECE(production) + {rule.ece_margin * 100:.2f} pp",
            _pct(m_p.ece),
            _pct(m_c.ece),
            m_c.ece <= m_p.ece + rule.ece_margin,
        ),
        Check(
            "hardest class not worse",
            f"on production's hardest class, candidate ≥ production − "
            f"{rule.hardest_class_margin * 100:.2f} pp",
            f"{hardest.name} {_pct(hardest.accuracy)}",
            f"{hardest.name} {_pct(hard_c)}",
            hard_c >= hardest.accuracy - rule.hardest_class_margin,
        ),
    ]
    if shadow is None or shadow.images < rule.min_shadow_images or shadow.rate is None:
        seen = 0 if shadow is None else shadow.images
        checks.append(
            Check(
                "live agreement",
                f"≥ {rule.agreement_floor:.0%} when at least {rule.min_shadow_images} "
                "shadowed images",
                "—",
                f"{seen} shadowed images: not applicable",
                None,
            )
        )
    else:
        checks.append(
            Check(
                "live agreement",
                f"≥ {rule.agreement_floor:.0%} of shadowed images predicted alike",
                "—",
                f"{_pct(shadow.rate)} of {shadow.images:,} shadowed images",
                shadow.rate >= rule.agreement_floor,
            )
        )
    failed = [c for c in checks if c.passed is False]
    if failed:
        return verdict(
            REJECT, "; ".join(f"{c.name} failed ({c.candidate})" for c in failed), checks
        )
    return verdict(PROMOTE, "every check passed", checks)
