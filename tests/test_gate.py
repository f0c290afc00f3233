"""evaluation/gate.py: the rule that turns the paired audit into promote / reject / undecided."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.gate import GateRule, ShadowAgreement, decide, shadow_agreement
from evaluation.metrics import model_metrics


def answers(labels: np.ndarray, wrong: np.ndarray, confidence: float = 0.9) -> tuple:
    """Predictions that are right except where ``wrong``; confident at ``confidence``."""
    pred = np.where(wrong, (labels + 1) % 10, labels)
    probs = np.full((len(labels), 10), (1 - confidence) / 9)
    probs[np.arange(len(labels)), pred] = confidence
    return pred, probs


def run(
    wrong_p: np.ndarray,
    wrong_c: np.ndarray,
    shadow: ShadowAgreement | None = None,
    conf_c: float = 0.9,
    n: int = 2000,
):  # noqa: ANN201
    labels = np.arange(n) % 10
    pred_p, probs_p = answers(labels, wrong_p)
    pred_c, probs_c = answers(labels, wrong_c, conf_c)
    metrics = tuple(
        model_metrics(labels, p, pr.max(axis=1), pr)
        for p, pr in ((pred_p, probs_p), (pred_c, probs_c))
    )
    return decide("baseline", ("prod", "cand"), labels, (pred_p, pred_c), metrics, shadow)  # type: ignore[arg-type]


N = 2000
LABELS = np.arange(N) % 10
BASE_WRONG = np.random.default_rng(0).random(N) < 0.10  # ~10 % wrong, in every class


def test_an_equal_candidate_is_promoted() -> None:
    d = run(BASE_WRONG, BASE_WRONG.copy())
    assert d.verdict == "promote" and d.exit_code == 0
    assert [c.passed for c in d.checks] == [True, True, True, None]  # no shadow data


def test_a_worse_candidate_is_rejected_on_accuracy() -> None:
    worse = BASE_WRONG | (np.random.default_rng(1).random(N) < 0.10)  # ~19 % wrong
    d = run(BASE_WRONG, worse)
    assert d.verdict == "reject" and d.exit_code == 1
    assert d.checks[0].name == "accuracy non-inferior" and d.checks[0].passed is False
    assert "accuracy non-inferior failed" in d.reason


def test_a_small_loss_inside_the_margin_is_promoted_and_one_beyond_it_is_not() -> None:
    rng = np.random.default_rng(0)
    # 1 image in 2,000 worse: −0.05 pp, inside the 0.3 pp margin
    slightly = BASE_WRONG.copy()
    slightly[np.flatnonzero(~BASE_WRONG)[:1]] = True
    assert run(BASE_WRONG, slightly).verdict == "promote"
    # 1 pp worse: beyond it
    beyond = BASE_WRONG.copy()
    beyond[rng.choice(np.flatnonzero(~BASE_WRONG), 20, replace=False)] = True
    assert run(BASE_WRONG, beyond).verdict == "reject"


def test_a_better_candidate_is_promoted() -> None:
    better = BASE_WRONG & (np.arange(N) % 2 == 0)  # half the mistakes
    assert run(BASE_WRONG, better, conf_c=0.95).verdict == "promote"  # as sure as it is right


def test_a_badly_calibrated_candidate_is_rejected() -> None:
    d = run(BASE_WRONG, BASE_WRONG.copy(), conf_c=0.999)  # 90 % right, 99.9 % sure
    assert d.verdict == "reject" and d.checks[1].passed is False


def test_a_candidate_worse_on_the_hardest_class_is_rejected() -> None:
    shirt = LABELS == 6
    hardest_p = BASE_WRONG | (shirt & (np.arange(N) % 3 == 0))  # Shirt hardest for production
    worse_shirt = hardest_p | (shirt & (np.arange(N) % 3 == 1))  # Shirt: 33 % more wrong
    fewer_elsewhere = worse_shirt & (shirt | (np.arange(N) % 2 == 0))  # better elsewhere
    d = run(hardest_p, fewer_elsewhere)
    assert d.checks[0].passed is True and d.checks[2].passed is False
    assert d.verdict == "reject" and "Shirt" in d.checks[2].production


def test_live_agreement_counts_only_with_enough_shadow_data() -> None:
    low = ShadowAgreement("cand", agree=80, disagree=120)
    assert run(BASE_WRONG, BASE_WRONG.copy(), low).verdict == "reject"
    few = ShadowAgreement("cand", agree=1, disagree=50)  # 51 < 100 images: not applicable
    d = run(BASE_WRONG, BASE_WRONG.copy(), few)
    assert d.verdict == "promote" and d.checks[3].passed is None
    high = ShadowAgreement("cand", agree=990, disagree=10)
    assert run(BASE_WRONG, BASE_WRONG.copy(), high).checks[3].passed is True


def test_too_few_images_or_no_candidate_is_undecided() -> None:
    d = run(BASE_WRONG[:100], BASE_WRONG[:100].copy(), n=100)
    assert d.verdict == "undecided" and d.exit_code == 2 and "fewer than the 500" in d.reason
    labels = np.arange(N) % 10
    same = decide("baseline", ("v", "v"), labels, (labels, labels), (None, None), None)  # type: ignore[arg-type]
    assert same.verdict == "undecided"


def test_the_shadow_counters_are_read_from_prometheus_text() -> None:
    def line(agreement: str, candidate: str, cls: str, model: str, value: float) -> str:
        labels = f'agreement="{agreement}",candidate="{candidate}",class_name="{cls}"'
        return f'fmnist_shadow_predictions_total{{{labels},model="{model}"}} {value}'

    text = "\n".join(
        [
            "# HELP fmnist_shadow_predictions_total x",
            "# TYPE fmnist_shadow_predictions_total counter",
            line("agree", "cand", "Bag", "baseline", 30.0),
            line("agree", "cand", "Coat", "baseline", 60.0),
            line("disagree", "cand", "Bag", "baseline", 10.0),
            line("agree", "old", "Bag", "baseline", 500.0),  # another candidate
            line("agree", "cand", "Bag", "deeper", 7.0),  # another model
            "",
        ]
    )
    got = shadow_agreement(text, "baseline", "cand")
    assert (got.agree, got.disagree, got.images) == (90, 10, 100) and got.rate == pytest.approx(0.9)
    assert shadow_agreement("", "baseline", "cand").rate is None


def test_the_margins_are_the_documented_ones() -> None:
    rule = GateRule()
    assert (rule.accuracy_margin, rule.ece_margin, rule.hardest_class_margin) == (0.003, 0.01, 0.02)
    assert (rule.agreement_floor, rule.min_images, rule.confidence) == (0.90, 500, 0.95)
