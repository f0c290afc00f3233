"""fmnist/prometheus.py: the one reader of ``/metrics`` text, on prometheus-client's parser."""

from __future__ import annotations

from fmnist.prometheus import metric_samples, metric_total, metric_totals

TEXT = "\n".join(
    [
        "# HELP fmnist_predictions_total Images classified.",
        "# TYPE fmnist_predictions_total counter",
        'fmnist_predictions_total{class_name="Bag",model="baseline"} 3.0',
        'fmnist_predictions_total{class_name="T-shirt/top",model="baseline"} 4.0',
        'fmnist_predictions_total{class_name="Bag",model="deeper"} 5.0',
        "# HELP fmnist_rejected_requests_total 4xx answers.",
        "# TYPE fmnist_rejected_requests_total counter",
        # a label value with a closing brace and an escaped quote: no regex survives it
        'fmnist_rejected_requests_total{reason="odd} \\"value"} 2.0',
        "# HELP fmnist_inference_seconds onnxruntime time.",
        "# TYPE fmnist_inference_seconds histogram",
        'fmnist_inference_seconds_bucket{le="+Inf",model="baseline"} 7.0',
        'fmnist_inference_seconds_sum{model="baseline"} 0.5',
        'fmnist_inference_seconds_count{model="baseline"} 7.0',
        'fmnist_inference_seconds_sum{model="deeper"} 0.25',
        'fmnist_inference_seconds_count{model="deeper"} 2.0',
        "",
    ]
)


def test_a_total_sums_the_samples_whose_labels_include_the_given_ones() -> None:
    assert metric_total(TEXT, "fmnist_predictions_total") == 12
    assert metric_total(TEXT, "fmnist_predictions_total", model="baseline") == 7
    assert metric_total(TEXT, "fmnist_predictions_total", model="baseline", class_name="Bag") == 3
    assert metric_total(TEXT, "fmnist_predictions_total", model="resnet") == 0
    assert metric_total(TEXT, "fmnist_rejected_requests_total", reason='odd} "value') == 2


def test_totals_of_several_names_in_one_reading() -> None:
    names = ("fmnist_inference_seconds_sum", "fmnist_inference_seconds_count", "nothing")
    assert metric_totals(TEXT, names) == {
        "fmnist_inference_seconds_sum": 0.75,
        "fmnist_inference_seconds_count": 9.0,
    }
    assert metric_totals(TEXT, names, model="deeper") == {
        "fmnist_inference_seconds_sum": 0.25,
        "fmnist_inference_seconds_count": 2.0,
    }


def test_text_that_is_not_an_exposition_has_no_samples() -> None:
    assert metric_samples("<html>not metrics</html>") == []
    assert metric_total("", "fmnist_predictions_total") == 0
