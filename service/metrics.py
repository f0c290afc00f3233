"""Prometheus metrics of the model service (beside BentoML's own request metrics).

Multi-worker correctness: ``bentoml serve`` starts every worker with
``PROMETHEUS_MULTIPROC_DIR`` set, so ``prometheus_client`` (imported in the worker, used
directly as BentoML 1.4 recommends; ``bentoml.metrics`` is deprecated) writes each
sample to per-process files and BentoML's ``/metrics`` merges them with a
``MultiProcessCollector``: counters and histograms are summed over workers; the info
gauge and the reference gauges (the same value in every worker) use
``multiprocess_mode="max"`` so they read that value, not its sum over the workers.
The metrics are created on first use (in the worker, after the environment is set) and
once per process, because the default registry refuses duplicate names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from fmnist.contract import CONFIDENCE_BUCKETS, ReferenceDistribution
from service.settings import DEFAULT_LOW_CONFIDENCE

__all__ = ["CONFIDENCE_BUCKETS", "ServiceMetrics", "service_metrics"]

PREFIX = "fmnist"
# onnxruntime calls take ~0.1 ms (batch 1) to ~100 ms (batch 1024, deeper) on a CPU.
INFERENCE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Request bodies: a PNG of one image is ~1 kB, a JSON batch ~2.5 kB an image, an .npy 784 B
# an image (1,024 images: ~0.8 MB); the default limit is 10 MiB.
BODY_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


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
        self.worker_connections = Gauge(
            f"{PREFIX}_worker_connections",
            "Kept-alive client connections (two requests or more) that sent a request to each "
            "worker in the last second.",
            ["worker"],
            multiprocess_mode="livemax",
        )
        self.rebalanced = Counter(
            f"{PREFIX}_rebalanced_connections_total",
            "Connections a worker closed because it held more than its share of them.",
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
        self.low_confidence = Counter(
            f"{PREFIX}_low_confidence",
            "Answers whose confidence is below FMNIST_LOW_CONFIDENCE, by model.",
            ["model"],
        )
        self.body_bytes = Histogram(
            f"{PREFIX}_request_body_bytes",
            "Size of the request bodies the prediction routes read, by route path.",
            ["path"],
            buckets=BODY_BUCKETS,
        )
        self.reference_class_share = Gauge(
            f"{PREFIX}_reference_class_share",
            "Share of the test set the model predicts as each class (the drift reference).",
            ["model", "class_name"],
            multiprocess_mode="max",
        )
        self.reference_confidence = Gauge(
            f"{PREFIX}_reference_confidence_share",
            "Share of the model's test-set answers with confidence <= le (cumulative).",
            ["model", "le"],
            multiprocess_mode="max",
        )

        # Versions (service/versions.py): bounded by the versions a worker loads.
        self.version_images = Counter(
            f"{PREFIX}_version_images_total",
            "Images answered by each served version of a model (traffic by version).",
            ["model", "version"],
        )
        self.model_alias = Gauge(
            f"{PREFIX}_model_alias",
            "1 for the version each alias of a model points to now, 0 for one it left.",
            ["model", "alias", "version"],
            multiprocess_mode="livemax",
        )
        self.aliases_reloads = Counter(
            f"{PREFIX}_aliases_reloads_total",
            "Changed aliases files a worker applied or rejected (the old aliases kept serving).",
            ["result"],
        )
        # Shadow traffic (service/shadow.py).
        self.shadow_predictions = Counter(
            f"{PREFIX}_shadow_predictions_total",
            "Shadowed images, by candidate version, production's predicted class and "
            "whether the candidate predicted the same class.",
            ["model", "candidate", "class_name", "agreement"],
        )
        self.shadow_seconds = Histogram(
            f"{PREFIX}_shadow_inference_seconds",
            "The candidate's onnxruntime run time per shadow call, by model.",
            ["model"],
            buckets=INFERENCE_BUCKETS,
        )
        self.shadow_dropped = Counter(
            f"{PREFIX}_shadow_dropped_total",
            "Images not shadowed because the shadow queue was full (the service was busy).",
            ["model"],
        )
        self.shadow_captured = Counter(
            f"{PREFIX}_shadow_captured_total",
            "Shadowed images kept on disk for labelling, by reason (disagree, low_confidence).",
            ["model", "reason"],
        )

    def start_shadow(self, model: str, candidate: str, class_names: Sequence[str]) -> None:
        """The shadow series of a model with a candidate at 0, so rates exist from the start."""
        for name in class_names:
            for agreement in ("agree", "disagree"):
                self.shadow_predictions.labels(model, candidate, name, agreement)
        self.shadow_dropped.labels(model)
        for reason in ("disagree", "low_confidence"):
            self.shadow_captured.labels(model, reason)

    def set_aliases(
        self, before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]
    ) -> None:
        """fmnist_model_alias: 1 where an alias points now, 0 where it pointed before."""
        for name, aliases in before.items():
            for alias, version in aliases.items():
                if after.get(name, {}).get(alias) != version:
                    self.model_alias.labels(name, alias, version).set(0)
        for name, aliases in after.items():
            for alias, version in aliases.items():
                self.model_alias.labels(name, alias, version).set(1)

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

    def prediction_observer(
        self,
        model: str,
        class_names: Sequence[str],
        low_confidence: float = DEFAULT_LOW_CONFIDENCE,
    ) -> Callable[[np.ndarray], None]:
        """For the model's runner: count predicted classes, record confidences and count
        those < ``low_confidence``, for each (N, 10) batch of probabilities.

        The labelled series are looked up once, not per batch: on a 64-image request this
        bookkeeping is a few per cent of a worker's time (py-spy, docs/performance.md)."""
        per_class = [self.predictions.labels(model, name) for name in class_names]
        confidence = self.confidence.labels(model)
        low = self.low_confidence.labels(model)

        def observe(probabilities: np.ndarray) -> None:
            top = probabilities.argmax(axis=1)
            counts = np.bincount(top, minlength=len(per_class))
            for index in np.flatnonzero(counts).tolist():
                per_class[index].inc(int(counts[index]))
            confidences = probabilities.max(axis=1)
            for value in confidences.tolist():
                confidence.observe(value)
            below = int(np.count_nonzero(confidences < low_confidence))
            if below:
                low.inc(below)

        return observe

    def start_model(self, model: str, class_names: Sequence[str]) -> None:
        """Every per-model counter at 0 from the start, so that rates and shares over them
        exist before the first answer (a class never predicted has share 0, not no data)."""
        for name in class_names:
            self.predictions.labels(model, name)
        self.low_confidence.labels(model)
        self.shed.labels(model)

    def set_reference(self, model: str, reference: ReferenceDistribution) -> None:
        for name, share in reference.class_share.items():
            self.reference_class_share.labels(model, name).set(share)
        for le, share in zip(reference.confidence_le, reference.confidence_share, strict=True):
            # le written as the confidence histogram writes its bounds ("0.1", "1.0").
            self.reference_confidence.labels(model, str(float(le))).set(share)

    def observe_body(self, path: str, size: int) -> None:
        self.body_bytes.labels(path).observe(size)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def set_model_info(self, model: str, sha256: str) -> None:
        self.model_info.labels(model, sha256).set(1)


@functools.cache
def service_metrics() -> ServiceMetrics:
    return ServiceMetrics()
