"""evaluation/metrics.py against cases small enough to compute by hand.

Then what those leave unpinned: defaults (level 0.95, seed 0, top-2, five confused pairs),
boundaries (an interval holds its ends, the skew tolerance holds its value), empty and
absent classes, and what the report's JSON holds; intervals checked against the percentile
bootstrap written out from its definition. All of it is what `make mutation` runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    ECE_BINS,
    SKEW_TOLERANCE,
    Interval,
    accuracy_ci,
    compare_every_pair,
    compare_models,
    confusion,
    holm_adjusted,
    mcnemar_exact,
    model_metrics,
    most_confused_pairs,
    negative_log_likelihood,
    per_class_scores,
    reliability,
    serving_skew,
    top_k_accuracy,
)
from fmnist.dataset import CLASS_NAMES

# 3 classes, 9 images. Row = true, column = predicted:
#   [[2, 1, 0],
#    [0, 1, 1],
#    [1, 0, 3]]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])


def test_confusion_matrix_of_the_toy_case() -> None:
    cm = confusion(Y_TRUE, Y_PRED, n_classes=3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]


def test_per_class_scores_of_the_toy_case() -> None:
    scores = per_class_scores(Y_TRUE, Y_PRED, names=("a", "b", "c"))
    # class a: 2 of 3 right; predicted a 3 times (images 0, 1, 8), 2 of them right.
    assert [s.support for s in scores] == [3, 2, 4]
    assert [s.accuracy for s in scores] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert [s.recall for s in scores] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert [s.precision for s in scores] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert [s.f1 for s in scores] == pytest.approx([2 / 3, 1 / 2, 3 / 4])


def test_per_class_scores_when_precision_and_recall_differ() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1])
    a, b = per_class_scores(y_true, y_pred, names=("a", "b"))
    assert (a.precision, a.recall) == pytest.approx((1.0, 0.75))
    assert (b.precision, b.recall) == pytest.approx((2 / 3, 1.0))
    assert a.f1 == pytest.approx(2 * 0.75 / 1.75)


def test_most_confused_pairs_orders_by_count_then_index() -> None:
    cm = np.array([[50, 7, 0], [2, 40, 7], [9, 0, 30]])
    pairs = most_confused_pairs(cm, top=3)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(2, 0, 9), (0, 1, 7), (1, 2, 7)]
    assert pairs[0].share_of_true == pytest.approx(9 / 39)
    # Only four non-zero off-diagonal cells exist: asking for more returns just those.
    assert len(most_confused_pairs(cm, top=10)) == 4


def test_ece_on_a_case_computed_by_hand() -> None:
    # 15 bins of width 1/15. 0.95 → bin 14, 0.55 → bin 8, 0.30 → bin 4.
    # bin 14: 2 images, accuracy 0.5, confidence 0.95 → |gap| 0.45, weight 2/5
    # bin 8:  2 images, accuracy 1.0, confidence 0.55 → |gap| 0.45, weight 2/5
    # bin 4:  1 image,  accuracy 0.0, confidence 0.30 → |gap| 0.30, weight 1/5
    # ECE = 0.18 + 0.18 + 0.06 = 0.42
    y_true = np.array([1, 1, 2, 2, 3])
    y_pred = np.array([1, 0, 2, 2, 0])
    conf = np.array([0.95, 0.95, 0.55, 0.55, 0.30])
    rel = reliability(y_true, y_pred, conf, bins=15)
    assert rel.ece == pytest.approx(0.42)
    assert rel.counts[14] == 2 and rel.counts[8] == 2 and rel.counts[4] == 1
    assert sum(rel.counts) == 5
    assert rel.accuracy[14] == pytest.approx(0.5) and rel.confidence[8] == pytest.approx(0.55)
    assert rel.accuracy[0] is None and rel.confidence[0] is None  # empty bin
    assert len(rel.edges) == 16 and rel.edges[0] == 0.0 and rel.edges[-1] == 1.0


def test_ece_bins_are_right_closed_and_cover_zero_and_one() -> None:
    rel = reliability(np.zeros(3, int), np.zeros(3, int), np.array([0.0, 0.5, 1.0]), bins=2)
    assert rel.counts == [2, 1]  # 0.0 and 0.5 in (0, 0.5] (0 folded in), 1.0 in (0.5, 1]
    assert rel.ece == pytest.approx(2 / 3 * (1 - 0.25) + 1 / 3 * 0.0)


def test_perfect_calibration_has_zero_ece() -> None:
    rel = reliability(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]), np.full(4, 0.5))
    assert rel.ece == pytest.approx(0.0)


def test_nll_by_hand_and_clipping() -> None:
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert negative_log_likelihood(np.array([0, 1]), probs) == pytest.approx(
        -(math.log(0.5) + math.log(0.75)) / 2
    )
    zero = np.array([[1.0, 0.0]])
    assert negative_log_likelihood(np.array([1]), zero) == pytest.approx(-math.log(1e-12))


def test_top2_accuracy_by_hand() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    # image 0: true 1 is 2nd → hit; image 1: true 0 is 3rd → miss; image 2: true 0 is 1st → hit
    assert top_k_accuracy(np.array([1, 0, 0]), probs, k=2) == pytest.approx(2 / 3)


def test_mcnemar_on_a_known_table() -> None:
    # 10 vs 2 discordant pairs: p = 2 · P(X ≤ 2 | n=12, ½) = 2 · (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10) == pytest.approx(158 / 4096)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence of a difference


def test_compare_models_builds_the_paired_table() -> None:
    # 20 images of class 0: 5 both right, 10 only a right, 2 only b right, 3 both wrong
    # (both wrong with the same class, so they agree there).
    y = np.zeros(20, dtype=int)
    a = np.array([0] * 5 + [0] * 10 + [1] * 2 + [3] * 3)
    b = np.array([0] * 5 + [2] * 10 + [0] * 2 + [3] * 3)
    c = compare_models("a", a, "b", b, y, seed=1)
    assert (c.both_right, c.only_a, c.only_b, c.both_wrong) == (5, 10, 2, 3)
    assert c.discordant == 12
    assert c.p_value == pytest.approx(158 / 4096)
    assert c.agreement == pytest.approx(8 / 20)
    assert c.difference.estimate == pytest.approx((10 - 2) / 20)
    assert c.difference.low <= c.difference.estimate <= c.difference.high
    assert compare_models("a", a, "b", b, y, seed=1) == c  # seeded: same interval


def test_the_report_s_fixed_choices() -> None:
    """Facts the report states in words: a 5% level, 15 ECE bins, 10,000 resamples."""
    assert ALPHA == 0.05
    assert ECE_BINS == 15
    assert BOOTSTRAP_RESAMPLES == 10_000
    assert SKEW_TOLERANCE == 1e-4


def test_holm_on_a_case_computed_by_hand() -> None:
    # Sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04, but
    # never below the rank before it: 0.06). Returned in the order given.
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.9, 0.02]) == pytest.approx([0.9, 0.04])
    assert holm_adjusted([0.9, 0.8]) == [1.0, 1.0]  # 0.8 × 2 capped at 1
    assert holm_adjusted([0.5]) == [0.5]  # one test: nothing to correct
    assert holm_adjusted([]) == []


def test_compare_every_pair_holm_adjusts_over_all_pairs() -> None:
    # base is wrong on images 30-39. a fixes 30-35: 0 vs 6 discordant, p = 2 · ½⁶ = 1/32.
    # c fixes 38 and breaks 0: 1 vs 1 against base, p = 1; a vs c: 7 vs 1, p = 2 · 9/256.
    # Holm: 1/32 · 3 = 3/32, 9/128 · 2 = 9/64, 1 · 1 = 1.
    y = np.zeros(40, dtype=int)
    base = np.array([0] * 30 + [1] * 10)
    a = base.copy()
    a[30:36] = 0
    c = base.copy()
    c[[38, 0]] = [0, 1]
    pairs = compare_every_pair({"base": base, "a": a, "c": c}, y)
    assert [(p.model_a, p.model_b) for p in pairs] == [("base", "a"), ("base", "c"), ("a", "c")]
    assert [p.p_value for p in pairs] == pytest.approx([1 / 32, 1.0, 9 / 128])
    assert [p.p_value_holm for p in pairs] == pytest.approx([3 / 32, 1.0, 9 / 64])
    assert pairs[0].p_value < ALPHA < pairs[0].p_value_holm  # significant only uncorrected
    assert pairs[0].to_dict()["p_value_holm"] == pytest.approx(3 / 32)
    single = compare_models("base", base, "a", a, y)
    assert single.p_value_holm == single.p_value  # a family of one


def test_accuracy_ci_contains_the_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, 10_000)
    pred = np.where(rng.random(10_000) < 0.9, y, (y + 1) % 10)
    ci = accuracy_ci(y, pred, seed=7)
    assert ci.estimate == pytest.approx(float(np.mean(y == pred)))
    assert ci.low < ci.estimate < ci.high
    assert accuracy_ci(y, pred, seed=7) == ci
    # Close to the normal approximation: half-width 1.96 · sqrt(p(1-p)/n) ≈ 0.59 pp.
    half = 1.96 * math.sqrt(ci.estimate * (1 - ci.estimate) / len(y))
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)


def test_binomial_bootstrap_matches_resampling_images() -> None:
    """The shortcut (one binomial draw per resample) is the index-resampling bootstrap."""
    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.8
    y, pred = np.zeros(400, int), np.where(correct, 0, 1)
    brute = np.random.default_rng(1).integers(0, 400, size=(20_000, 400))
    brute_q = np.quantile(correct[brute].mean(axis=1), [0.025, 0.975])
    ci = accuracy_ci(y, pred, resamples=20_000, seed=2)
    assert ci.low == pytest.approx(brute_q[0], abs=0.006)
    assert ci.high == pytest.approx(brute_q[1], abs=0.006)


def test_accuracy_ci_rejects_an_empty_set() -> None:
    with pytest.raises(ValueError, match="empty"):
        accuracy_ci(np.array([]), np.array([]))


def test_serving_skew_counts_mismatches_and_file_identity() -> None:
    local = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    same = serving_skew(np.array([0, 1, 0]), local + 1e-7, local, "abc", "abc")
    assert same.ok and same.same_file is True and same.argmax_mismatches == 0
    assert same.max_abs_prob_diff == pytest.approx(1e-7)
    off = serving_skew(np.array([0, 1, 1]), local[:, ::-1], local, "abc", "def")
    assert not off.ok and off.same_file is False and off.argmax_mismatches == 1
    assert off.max_abs_prob_diff == pytest.approx(0.8)
    assert serving_skew(np.array([0]), local[:1], local[:1], None, "x").same_file is None


def test_serving_skew_tolerates_json_rounding_and_nothing_more() -> None:
    local = np.array([[0.6, 0.4]])
    below = serving_skew(np.array([0]), local + [[0.9e-4, -0.9e-4]], local, "a", "a")
    above = serving_skew(np.array([0]), local + [[1.1e-4, -1.1e-4]], local, "a", "a")
    assert below.ok and not above.ok
    assert above.to_dict()["tolerance"] == 1e-4


def test_model_metrics_ties_everything_together() -> None:
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 3)
    pred = y.copy()
    pred[[6, 16]] = 0  # two Shirts called T-shirt/top
    probs = np.full((30, 10), 0.02)
    probs[np.arange(30), pred] = 0.82
    probs[[6, 16], 6] = 0.1  # the true class is the runner-up in both mistakes
    m = model_metrics(y, pred, probs.max(axis=1), probs)
    assert m.images == 30
    assert m.accuracy.estimate == pytest.approx(28 / 30)
    assert m.hardest_class().name == "Shirt" and m.hardest_class().accuracy == pytest.approx(1 / 3)
    assert m.confused_pairs[0].true == 6 and m.confused_pairs[0].predicted == 0
    assert m.confused_pairs[0].count == 2 and len(m.confused_pairs) == 1
    assert m.top2_accuracy == pytest.approx(1.0)
    assert m.ece == pytest.approx(abs(28 / 30 - 0.82))
    assert m.to_dict()["confusion"][6][0] == 2
    # 15 equal-width bins by default: both confidences (0.82) fall in (0.8, 0.8667].
    assert len(m.reliability.counts) == 15 and len(m.reliability.edges) == 16
    assert m.reliability.counts[12] == 30 and sum(m.reliability.counts) == 30


# -- every statistic pinned where it is defined (the tests `make mutation` runs) ----------


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
