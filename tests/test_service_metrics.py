"""service/metrics.py pinned where it is defined: names, help, labels, buckets, and what
each observation records (seconds, not milliseconds; images; the predicted class).

Each test builds its own ServiceMetrics (the process's cached one set aside) and reads it
back as /metrics shows it: the Prometheus text exposition. Part of `make mutation`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fmnist import contract
from service import metrics as metrics_mod
from service.metrics import ServiceMetrics, service_metrics

# README.md's list of the service's own metrics: name → (type, help, labels).
METRICS = {
    "fmnist_predictions": (
        "counter",
        "Images classified, by model and predicted class.",
        ("model", "class_name"),
    ),
    "fmnist_inference_seconds": (
        "histogram",
        "onnxruntime run time per call (one call serves a whole batch), by model.",
        ("model",),
    ),
    "fmnist_inference_batch_size": (
        "histogram",
        "Images per onnxruntime call (adaptive batches and batch requests), by model.",
        ("model",),
    ),
    "fmnist_prediction_confidence": (
        "histogram",
        "Probability of the predicted class (a drift signal), by model.",
        ("model",),
    ),
    "fmnist_queue_seconds": (
        "histogram",
        "Time the oldest request of a batch waited in the model's queue, by model.",
        ("model",),
    ),
    "fmnist_shed_requests": (
        "counter",
        "Requests turned away with 503 overloaded (the model's queue was full), by model.",
        ("model",),
    ),
    "fmnist_worker_requests": (
        "counter",
        "Requests answered by each worker process (the split over workers).",
        ("worker",),
    ),
    "fmnist_worker_connections": (
        "gauge",
        "Kept-alive client connections (two requests or more) that sent a request to each "
        "worker in the last second.",
        ("worker",),
    ),
    "fmnist_rebalanced_connections": (
        "counter",
        "Connections a worker closed because it held more than its share of them.",
        ("worker",),
    ),
    "fmnist_rejected_requests": (
        "counter",
        "Requests answered with a 4xx because of bad input, by reason.",
        ("reason",),
    ),
    "fmnist_model_info": (
        "gauge",
        "Served models (value 1), with the sha256 of their ONNX file.",
        ("model", "sha256"),
    ),
    "fmnist_low_confidence": (
        "counter",
        "Answers whose confidence is below FMNIST_LOW_CONFIDENCE, by model.",
        ("model",),
    ),
    "fmnist_request_body_bytes": (
        "histogram",
        "Size of the request bodies the prediction routes read, by route path.",
        ("path",),
    ),
    "fmnist_reference_class_share": (
        "gauge",
        "Share of the test set the model predicts as each class (the drift reference).",
        ("model", "class_name"),
    ),
    "fmnist_reference_confidence_share": (
        "gauge",
        "Share of the model's test-set answers with confidence <= le (cumulative).",
        ("model", "le"),
    ),
    "fmnist_version_images": (
        "counter",
        "Images answered by each served version of a model (traffic by version).",
        ("model", "version"),
    ),
    "fmnist_model_alias": (
        "gauge",
        "1 for the version each alias of a model points to now, 0 for one it left.",
        ("model", "alias", "version"),
    ),
    "fmnist_aliases_reloads": (
        "counter",
        "Changed aliases files a worker applied or rejected (the old aliases kept serving).",
        ("result",),
    ),
    "fmnist_shadow_predictions": (
        "counter",
        "Shadowed images, by candidate version, production's predicted class and whether "
        "the candidate predicted the same class.",
        ("model", "candidate", "class_name", "agreement"),
    ),
    "fmnist_shadow_inference_seconds": (
        "histogram",
        "The candidate's onnxruntime run time per shadow call, by model.",
        ("model",),
    ),
    "fmnist_shadow_dropped": (
        "counter",
        "Images not shadowed because the shadow queue was full (the service was busy).",
        ("model",),
    ),
    "fmnist_shadow_captured": (
        "counter",
        "Shadowed images kept on disk for labelling, by reason (disagree, low_confidence).",
        ("model", "reason"),
    ),
}
BODY_BUCKETS = [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]
# onnxruntime calls take ~0.1 ms to ~100 ms: buckets in seconds from 0.2 ms to 1 s.
SECONDS_BUCKETS = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
CLASSES = tuple(f"class{i}" for i in range(10))


@pytest.fixture
def metrics() -> Iterator[ServiceMetrics]:
    """A fresh ServiceMetrics in the default registry; the process's own put back after."""
    cached = service_metrics() if service_metrics.cache_info().currsize else None
    for collector in vars(cached).values() if cached else ():
        REGISTRY.unregister(collector)
    fresh = ServiceMetrics()
    try:
        yield fresh
    finally:
        for collector in vars(fresh).values():
            REGISTRY.unregister(collector)
        for collector in vars(cached).values() if cached else ():
            REGISTRY.register(collector)


def exposition() -> dict[str, tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
    """The fmnist_* families of /metrics: name → (type, help, [(sample, labels, value)]).

    (prometheus_client's own ``*_created`` timestamps, which the parser reads as families
    of their own, are left out.)
    """
    text = generate_latest(REGISTRY).decode()
    return {
        f.name: (f.type, f.documentation, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
        if f.name.startswith("fmnist_") and not f.name.endswith("_created")
    }


def value(sample: str, **labels: str) -> float:
    for _, _, samples in exposition().values():
        for name, got, v in samples:
            if name == sample and got == labels:
                return v
    raise AssertionError(f"no sample {sample}{labels}")


def buckets(sample: str, **labels: str) -> dict[str, float]:
    """{le: cumulative count} of one histogram's labelled series."""
    found = {}
    for _, _, samples in exposition().values():
        for name, got, v in samples:
            if name == sample + "_bucket" and {k: got[k] for k in got if k != "le"} == labels:
                found[got["le"]] = v
    return found


def test_module_constants() -> None:
    assert metrics_mod.PREFIX == "fmnist"
    assert list(metrics_mod.INFERENCE_BUCKETS) == SECONDS_BUCKETS
    assert list(metrics_mod.BATCH_BUCKETS) == BATCH_BUCKETS
    assert list(metrics_mod.CONFIDENCE_BUCKETS) == CONFIDENCE_BUCKETS
    assert list(metrics_mod.BODY_BUCKETS) == BODY_BUCKETS


def test_names_types_help_and_labels(metrics: ServiceMetrics) -> None:
    metrics.predictions.labels("m", "c").inc()
    for hist in ("inference_seconds", "batch_size", "confidence", "queue_seconds"):
        getattr(metrics, hist).labels("m").observe(0.5)
    metrics.shed.labels("m").inc()
    metrics.worker_requests.labels("3").inc()
    metrics.worker_connections.labels("3").set(4)
    metrics.rebalanced.labels("3").inc()
    metrics.reject("r")
    metrics.set_model_info("m", "abc")
    metrics.low_confidence.labels("m").inc()
    metrics.observe_body("/p", 10)
    metrics.set_reference("m", contract.reference_distribution(np.eye(10)[:1], CLASSES))
    metrics.version_images.labels("m", "v1").inc()
    metrics.set_aliases({"m": {"production": "v0"}}, {"m": {"production": "v1"}})
    metrics.aliases_reloads.labels("applied").inc()
    metrics.start_shadow("m", "v2", CLASSES)
    metrics.shadow_seconds.labels("m").observe(0.001)
    families = exposition()
    assert set(families) == set(METRICS)
    for name, (kind, help_text, labels) in METRICS.items():
        got_kind, got_help, samples = families[name]
        assert (got_kind, got_help) == (kind, help_text), name
        bucket = {"le"} if kind == "histogram" else set()
        label_sets = {frozenset(s[1]) - bucket for s in samples if s[1]}
        assert label_sets == {frozenset(labels)}, name
    assert metrics.model_info._multiprocess_mode == "max"  # 1 with N workers, not N
    # One series per worker (its own label), gone when its process is.
    assert metrics.worker_connections._multiprocess_mode == "livemax"
    # The same reference in every worker: read once, not summed over the workers.
    assert metrics.reference_class_share._multiprocess_mode == "max"
    assert metrics.reference_confidence._multiprocess_mode == "max"
    # An alias's series is 1 where it points now and 0 where it pointed before.
    assert value("fmnist_model_alias", model="m", alias="production", version="v1") == 1
    assert value("fmnist_model_alias", model="m", alias="production", version="v0") == 0
    # Every shadow series of a candidate exists at 0 from the start.
    assert (
        value(
            "fmnist_shadow_predictions_total",
            model="m",
            candidate="v2",
            class_name="class3",
            agreement="disagree",
        )
        == 0
    )
    assert value("fmnist_shadow_dropped_total", model="m") == 0


def test_histogram_buckets(metrics: ServiceMetrics) -> None:
    metrics.batch_observer("m")(1, 0.0, 0.0)
    metrics.prediction_observer("m", CLASSES)(np.eye(10)[:1])

    def les(values: Sequence[float]) -> list[str]:
        return [*(str(float(v)) for v in values), "+Inf"]

    assert list(buckets("fmnist_inference_seconds", model="m")) == les(SECONDS_BUCKETS)
    assert list(buckets("fmnist_queue_seconds", model="m")) == les(SECONDS_BUCKETS)
    assert list(buckets("fmnist_inference_batch_size", model="m")) == les(BATCH_BUCKETS)
    assert list(buckets("fmnist_prediction_confidence", model="m")) == les(CONFIDENCE_BUCKETS)


def test_batch_observer_records_seconds_images_and_queueing(metrics: ServiceMetrics) -> None:
    observe = metrics.batch_observer("baseline")
    observe(3, 0.004, 0.0015)  # 3 images, queued 4 ms, onnxruntime ran 1.5 ms
    observe(64, 0.0, 0.03)
    assert value("fmnist_inference_seconds_sum", model="baseline") == pytest.approx(0.0315)
    assert value("fmnist_inference_seconds_count", model="baseline") == 2
    run = buckets("fmnist_inference_seconds", model="baseline")
    assert (run["0.001"], run["0.002"], run["0.02"], run["0.05"]) == (0, 1, 1, 2)
    assert value("fmnist_inference_batch_size_sum", model="baseline") == 67
    size = buckets("fmnist_inference_batch_size", model="baseline")
    assert (size["2.0"], size["4.0"], size["32.0"], size["64.0"]) == (0, 1, 1, 2)
    assert value("fmnist_queue_seconds_sum", model="baseline") == pytest.approx(0.004)
    assert value("fmnist_queue_seconds_count", model="baseline") == 2
    queue = buckets("fmnist_queue_seconds", model="baseline")
    assert (queue["0.0002"], queue["0.002"], queue["0.005"]) == (1, 1, 2)
    # Another model's observer writes its own series only.
    metrics.batch_observer("deeper")(1, 0.0, 0.1)
    assert value("fmnist_inference_seconds_count", model="baseline") == 2
    assert value("fmnist_inference_seconds_sum", model="deeper") == pytest.approx(0.1)


def test_predictions_count_the_argmax_class_and_record_its_probability(
    metrics: ServiceMetrics,
) -> None:
    probs = np.array(
        [
            [0.7, 0.3] + [0.0] * 8,  # class0, 0.7
            [0.1, 0.85, 0.05] + [0.0] * 7,  # class1, 0.85
            [0.0] * 9 + [1.0],  # class9, 1.0
            [0.4, 0.6] + [0.0] * 8,  # class1, 0.6
        ]
    )
    metrics.prediction_observer("deeper", CLASSES)(probs)
    assert value("fmnist_predictions_total", model="deeper", class_name="class0") == 1
    assert value("fmnist_predictions_total", model="deeper", class_name="class1") == 2
    assert value("fmnist_predictions_total", model="deeper", class_name="class9") == 1
    counted = [
        s
        for s in exposition()["fmnist_predictions"][2]
        if s[0] == "fmnist_predictions_total" and s[1]["model"] == "deeper"
    ]
    # Every class has its series (a class never predicted counts 0, the drift rule's share
    # needs it), and only the predicted ones moved.
    assert {s[1]["class_name"]: s[2] for s in counted} == {
        name: {"class0": 1, "class1": 2, "class9": 1}.get(name, 0) for name in CLASSES
    }
    assert value("fmnist_prediction_confidence_count", model="deeper") == 4
    assert value("fmnist_prediction_confidence_sum", model="deeper") == pytest.approx(3.15)
    conf = buckets("fmnist_prediction_confidence", model="deeper")
    assert (conf["0.5"], conf["0.6"], conf["0.7"], conf["0.9"], conf["0.99"]) == (0, 1, 2, 3, 3)
    metrics.prediction_observer("deeper", CLASSES)(probs[1:2])
    assert value("fmnist_predictions_total", model="deeper", class_name="class1") == 3


def test_rejections_sheds_and_model_info(metrics: ServiceMetrics) -> None:
    metrics.reject("bad_image")
    metrics.reject("bad_image")
    metrics.reject("too_large")
    assert value("fmnist_rejected_requests_total", reason="bad_image") == 2
    assert value("fmnist_rejected_requests_total", reason="too_large") == 1
    metrics.set_model_info("baseline", "ab12")
    metrics.set_model_info("baseline", "ab12")
    assert value("fmnist_model_info", model="baseline", sha256="ab12") == 1


def test_one_instance_per_process() -> None:
    assert service_metrics() is service_metrics()


def test_low_confidence_counts_answers_strictly_below_the_threshold(
    metrics: ServiceMetrics,
) -> None:
    probs = np.array(
        [
            [0.45, 0.35] + [0.025] * 8,  # 0.45: low at 0.5
            [0.5, 0.3] + [0.025] * 8,  # 0.5: not below 0.5
            [0.9, 0.1] + [0.0] * 8,
        ]
    )
    metrics.prediction_observer("deeper", CLASSES, 0.5)(probs)
    assert value("fmnist_low_confidence_total", model="deeper") == 1
    metrics.prediction_observer("deeper", CLASSES, 0.95)(probs)
    assert value("fmnist_low_confidence_total", model="deeper") == 4
    metrics.prediction_observer("deeper", CLASSES)(probs)  # the setting's default, 0.5
    assert value("fmnist_low_confidence_total", model="deeper") == 5


def test_start_model_puts_every_series_at_zero(metrics: ServiceMetrics) -> None:
    metrics.start_model("baseline", CLASSES)
    for name in CLASSES:
        assert value("fmnist_predictions_total", model="baseline", class_name=name) == 0
    assert value("fmnist_low_confidence_total", model="baseline") == 0
    assert value("fmnist_shed_requests_total", model="baseline") == 0


def test_reference_gauges(metrics: ServiceMetrics) -> None:
    probs = np.eye(10)[[0, 0, 0, 9]] * 0.55 + 0.05  # confidence 0.6, classes 0 and 9
    reference = contract.reference_distribution(probs, CLASSES)
    metrics.set_reference("deeper", reference)
    assert value("fmnist_reference_class_share", model="deeper", class_name="class0") == 0.75
    assert value("fmnist_reference_class_share", model="deeper", class_name="class9") == 0.25
    assert value("fmnist_reference_class_share", model="deeper", class_name="class4") == 0
    # le written as the live confidence histogram writes it, so the two join on it.
    metrics.prediction_observer("deeper", CLASSES)(probs)
    live = buckets("fmnist_prediction_confidence", model="deeper")
    for le in CONFIDENCE_BUCKETS:
        got = value("fmnist_reference_confidence_share", model="deeper", le=str(float(le)))
        assert got == live[str(float(le))] / 4


def test_body_sizes_by_path(metrics: ServiceMetrics) -> None:
    metrics.observe_body("/classify", 900)
    metrics.observe_body("/classify", 5000)
    metrics.observe_body("/classify_npy", 800_000)
    assert value("fmnist_request_body_bytes_count", path="/classify") == 2
    assert value("fmnist_request_body_bytes_sum", path="/classify") == 5900
    sizes = buckets("fmnist_request_body_bytes", path="/classify")
    assert (sizes["256.0"], sizes["1024.0"], sizes["4096.0"], sizes["16384.0"]) == (0, 1, 1, 2)
    assert value("fmnist_request_body_bytes_sum", path="/classify_npy") == 800_000
