"""evaluation/metrics.py: what tests/test_evaluation_metrics.py leaves unpinned.

Defaults (level 0.95, seed 0, top-2, five confused pairs), boundaries (an interval holds
its ends, the skew tolerance holds its value), empty and absent classes, and what the
report's JSON holds. Intervals are checked against the percentile bootstrap written out
here from its definition. Part of `make mutation`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import (
    BOOTSTRAP_RESAMPLES,
    Interval,
    accuracy_ci,
    compare_every_pair,
    compare_models,
    confusion,
    model_metrics,
    most_confused_pairs,
    negative_log_likelihood,
    per_class_scores,
    serving_skew,
    top_k_accuracy,
)
from fmnist.dataset import CLASS_NAMES


def percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def test_interval_holds_its_ends() -> None:
    ci = Interval(0.5, 0.4, 0.6)
    assert ci.level == 0.95
    assert ci.contains(0.4) and ci.contains(0.6) and ci.contains(0.5)
    assert not ci.contains(0.3999) and not ci.contains(0.6001)


def test_accuracy_ci_is_the_binomial_percentile_bootstrap() -> None:
    y = np.zeros(50, int)
    pred = np.where(np.arange(50) < 40, 0, 1)  # 40 of 50 right
    draws = np.random.default_rng(0).binomial(50, 0.8, size=BOOTSTRAP_RESAMPLES) / 50
    ci = accuracy_ci(y, pred)  # level 0.95, seed 0 by default
    assert (ci.estimate, ci.level) == (0.8, 0.95)
    assert (ci.low, ci.high) == percentile_interval(draws, 0.95)
    narrow = accuracy_ci(y, pred, level=0.5, resamples=1000, seed=3)
    draws = np.random.default_rng(3).binomial(50, 0.8, size=1000) / 50
    assert (narrow.low, narrow.high, narrow.level) == (*percentile_interval(draws, 0.5), 0.5)


def test_accuracy_ci_of_one_image_and_of_none() -> None:
    assert accuracy_ci(np.array([3]), np.array([3])) == Interval(1.0, 1.0, 1.0, 0.95)
    with pytest.raises(ValueError) as caught:
        accuracy_ci(np.array([]), np.array([]))
    assert str(caught.value) == "accuracy of an empty set is undefined"


def test_top_k_defaults_to_two_and_handles_absent_classes() -> None:
    probs = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    # image 0: true 2 is 3rd; image 1: true 2 is 2nd. Class 0, 1 and 3 are never true.
    y = np.array([2, 2])
    assert top_k_accuracy(y, probs) == 0.5
    assert top_k_accuracy(y, probs, k=3) == 1.0
    assert top_k_accuracy(y, probs, k=1) == 0.0


def test_per_class_scores_of_a_class_never_predicted_or_seen() -> None:
    a, b, c = per_class_scores(np.array([0, 0, 1]), np.array([0, 0, 0]), names=("a", "b", "c"))
    assert (b.support, b.accuracy, b.precision, b.recall, b.f1) == (1, 0.0, 0.0, 0.0, 0.0)
    assert (c.name, c.support, c.precision, c.recall, c.f1) == ("c", 0, 0.0, 0.0, 0.0)
    assert (a.precision, a.recall) == pytest.approx((2 / 3, 1.0))


def test_most_confused_pairs_keeps_five_by_default_and_leaves_the_matrix_alone() -> None:
    cm = np.array(
        [
            [9, 6, 5, 1],
            [4, 9, 3, 0],
            [2, 0, 9, 0],
            [0, 0, 0, 0],
        ]
    )
    before = cm.copy()
    pairs = most_confused_pairs(cm)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [
        (0, 1, 6),
        (0, 2, 5),
        (1, 0, 4),
        (1, 2, 3),
        (2, 0, 2),
    ]
    assert [p.share_of_true for p in pairs] == pytest.approx(
        [6 / 21, 5 / 21, 4 / 16, 3 / 16, 2 / 11]
    )
    assert np.array_equal(cm, before)
    one = most_confused_pairs(np.array([[0, 1], [0, 0]]))  # one image, wrong
    assert [(p.true, p.predicted, p.count, p.share_of_true) for p in one] == [(0, 1, 1, 1.0)]
    assert most_confused_pairs(np.eye(3, dtype=int) * 5) == []


def test_confusion_has_a_row_and_column_for_every_class() -> None:
    cm = confusion(np.array([1, 1]), np.array([1, 2]), n_classes=4)
    assert cm.tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert confusion(np.array([0]), np.array([0])).shape == (10, 10)


def test_nll_is_computed_in_float64_from_float32_probabilities() -> None:
    probs = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)  # what onnxruntime returns
    expected = -(math.log(float(np.float32(0.1))) + math.log(float(np.float32(0.3)))) / 2
    assert negative_log_likelihood(np.array([0, 1]), probs) == pytest.approx(expected, abs=1e-15)


def test_nll_clips_at_1e_12_only() -> None:
    probs = np.array([[1e-13, 1.0 - 1e-13], [1e-11, 1.0 - 1e-11]])
    assert negative_log_likelihood(np.array([0, 0]), probs) == pytest.approx(
        -(math.log(1e-12) + math.log(1e-11)) / 2
    )
    assert negative_log_likelihood(np.array([1]), np.array([[0.0, 1.0]])) == 0.0


def test_model_metrics_defaults_and_report_dict() -> None:
    # 30 images of classes 0-8 (no Ankle boot); class 5 is right once of 3.
    y = np.array(list(range(9)) * 3 + [0, 1, 2])
    pred = y.copy()
    pred[[5, 14]] = 7
    probs = np.full((30, 10), 0.01)
    probs[np.arange(30), pred] = 0.7
    probs[[5, 14], 0] = 0.2  # the true class 5 is third: counted by top-3, not top-2
    probs[[5, 14], 5] = 0.1
    m = model_metrics(y, pred, probs.max(axis=1), probs)
    assert m.top2_accuracy == pytest.approx(28 / 30)
    assert m.accuracy == accuracy_ci(y, pred, seed=0)
    hardest = m.hardest_class()  # Ankle boot has no image: not "the hardest" at 0 %
    assert (hardest.name, hardest.support) == ("Sandal", 3)
    assert hardest.accuracy == pytest.approx(1 / 3)
    assert m.nll == pytest.approx(negative_log_likelihood(y, probs))
    out = m.to_dict()
    assert out["images"] == 30 and out["ece"] == m.ece
    assert out["confused_pairs"] == [
        {
            "true": 5,
            "predicted": 7,
            "count": 2,
            "share_of_true": pytest.approx(2 / 3),
            "true_name": "Sandal",
            "predicted_name": "Sneaker",
        }
    ]
    assert out["per_class"][9] == {
        "name": CLASS_NAMES[9],
        "support": 0,
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert out["accuracy"]["level"] == 0.95
    assert isinstance(out["confusion"], list) and out["confusion"][5][7] == 2


def test_compare_models_difference_is_the_paired_bootstrap() -> None:
    y = np.zeros(20, dtype=int)
    a = np.array([0] * 5 + [0] * 10 + [1] * 2 + [3] * 3)
    b = np.array([0] * 5 + [2] * 10 + [0] * 2 + [3] * 3)
    cells = np.array([5, 10, 2, 3])
    draws = np.random.default_rng(0).multinomial(20, cells / 20, size=BOOTSTRAP_RESAMPLES)
    diffs = (draws[:, 1] - draws[:, 2]) / 20
    c = compare_models("a", a, "b", b, y)  # level 0.95, seed 0 by default
    assert c.difference == Interval(0.4, *percentile_interval(diffs, 0.95), 0.95)
    draws = np.random.default_rng(4).multinomial(20, cells / 20, size=500)
    diffs = (draws[:, 1] - draws[:, 2]) / 20
    c = compare_models("a", a, "b", b, y, level=0.8, resamples=500, seed=4)
    assert c.difference == Interval(0.4, *percentile_interval(diffs, 0.8), 0.8)
    assert c.to_dict()["discordant"] == 12
    assert c.to_dict()["difference"]["level"] == 0.8
    reverse = compare_models("b", b, "a", a, y)
    assert (reverse.only_a, reverse.only_b, reverse.difference.estimate) == (2, 10, -0.4)


def test_seed_defaults_to_zero_and_is_passed_on() -> None:
    # Enough images that the interval's ends move with the seed (10 small images do not).
    n = 100_003
    y = np.zeros(n, dtype=int)
    a = (np.arange(n) >= 80_000).astype(int)  # 80 % right
    b = (np.arange(n) % 7 == 0).astype(int)
    assert accuracy_ci(y, a) == accuracy_ci(y, a, seed=0) != accuracy_ci(y, a, seed=1)
    probs = np.eye(10)[a]
    m = model_metrics(y, a, probs.max(axis=1), probs)
    assert m.accuracy == accuracy_ci(y, a, seed=0)
    assert model_metrics(y, a, probs.max(axis=1), probs, seed=2).accuracy == accuracy_ci(
        y, a, seed=2
    )
    pair = compare_every_pair({"a": a, "b": b}, y, seed=5)[0]
    assert pair.difference == compare_models("a", a, "b", b, y, seed=5).difference
    assert pair.difference != compare_models("a", a, "b", b, y).difference
    assert compare_every_pair({"a": a, "b": b}, y)[0] == compare_models("a", a, "b", b, y)


def test_serving_skew_boundaries_and_dict() -> None:
    local = np.array([[0.75, 0.25], [0.5, 0.5]])
    exact = serving_skew(np.array([0, 0]), local + [[2**-14, 0.0], [0.0, 0.0]], local, "x", "x")
    assert exact.max_abs_prob_diff == 2**-14 and exact.mean_abs_prob_diff == 2**-16
    tol = serving_skew(np.array([0]), np.array([[1e-4, 0.0]]), np.zeros((1, 2)), "x", "x")
    assert tol.max_abs_prob_diff == 1e-4 and tol.ok  # the tolerance itself is accepted
    flipped = serving_skew(np.array([1]), local[:1], local[:1], "x", "x")
    assert flipped.max_abs_prob_diff == 0.0 and flipped.argmax_mismatches == 1
    assert not flipped.ok  # a different answer fails whatever the probabilities
    empty = serving_skew(np.array([], int), np.zeros((0, 10)), np.zeros((0, 10)), None, "x")
    assert (empty.images, empty.max_abs_prob_diff, empty.mean_abs_prob_diff) == (0, 0.0, 0.0)
    assert flipped.to_dict() == {
        "images": 1,
        "argmax_mismatches": 1,
        "max_abs_prob_diff": 0.0,
        "mean_abs_prob_diff": 0.0,
        "served_sha256": "x",
        "local_sha256": "x",
        "same_file": True,
        "ok": False,
        "tolerance": 1e-4,
    }
