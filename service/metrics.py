"""Prometheus metrics of the model service (beside BentoML's own request metrics).

Multi-worker correctness: ``bentoml serve`` starts every worker with
``PROMETHEUS_MULTIPROC_DIR`` set, so ``prometheus_client`` (imported in the worker, used
directly as BentoML 1.4 recommends; ``bentoml.metrics`` is deprecated) writes each
sample to per-process files and BentoML's ``/metrics`` merges them with a
``MultiProcessCollector``: counters and histograms are summed over workers; the info
gauge uses ``multiprocess_mode="max"`` so it reads 1, not the number of workers.
The metrics are created on first use (in the worker, after the environment is set) and
once per process, because the default registry refuses duplicate names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

PREFIX = "fmnist"
# onnxruntime calls take ~0.1 ms (batch 1) to ~100 ms (batch 1024, deeper) on a CPU.
INFERENCE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class ServiceMetrics:
    """The service's own metrics; one instance per process (see :func:`service_metrics`)."""

    def __init__(self) -> None:
        self.predictions = Counter(
            f"{PREFIX}_predictions_total",
            "Images classified, by model and predicted class.",
            ["model", "class_name"],
        )
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_seconds",
            "onnxruntime run time per call (one call serves a whole batch), by model.",
            ["model"],
            buckets=INFERENCE_BUCKETS,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_inference_batch_size",
            "Images per onnxruntime call (adaptive batches and batch requests), by model.",
            ["model"],
            buckets=BATCH_BUCKETS,
        )
        self.confidence = Histogram(
            f"{PREFIX}_prediction_confidence",
            "Probability of the predicted class (a drift signal), by model.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
        )
        self.queue_seconds = Histogram(
            f"{PREFIX}_queue_seconds",
            "Time the oldest request of a batch waited in the model's queue, by model.",
            ["model"],
            buckets=INFERENCE_BUCKETS,
        )
        self.shed = Counter(
            f"{PREFIX}_shed_requests_total",
            "Requests turned away with 503 overloaded (the model's queue was full), by model.",
            ["model"],
        )
        self.worker_requests = Counter(
            f"{PREFIX}_worker_requests_total",
            "Requests answered by each worker process (the split over workers).",
            ["worker"],
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests_total",
            "Requests answered with a 4xx because of bad input, by reason.",
            ["reason"],
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "Served models (value 1), with the sha256 of their ONNX file.",
            ["model", "sha256"],
            multiprocess_mode="max",
        )

    def batch_observer(self, model: str) -> Callable[[int, float, float], None]:
        """For the model's micro-batcher: (images, seconds queued, seconds run) per batch."""
        inference = self.inference_seconds.labels(model)
        batch_size = self.batch_size.labels(model)
        queue = self.queue_seconds.labels(model)

        def observe(images: int, queued: float, ran: float) -> None:
            inference.observe(ran)
            batch_size.observe(images)
            queue.observe(queued)

        return observe

    def observe_predictions(
        self, model: str, class_names: Sequence[str], probabilities: np.ndarray
    ) -> None:
        """Count predicted classes and record confidences for (N, 10) probabilities."""
        top = probabilities.argmax(axis=1)
        for index, count in zip(*np.unique(top, return_counts=True), strict=True):
            self.predictions.labels(model, class_names[int(index)]).inc(int(count))
        confidence = self.confidence.labels(model)
        for value in probabilities.max(axis=1).tolist():
            confidence.observe(value)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def set_model_info(self, model: str, sha256: str) -> None:
        self.model_info.labels(model, sha256).set(1)


@functools.cache
def service_metrics() -> ServiceMetrics:
    return ServiceMetrics()
