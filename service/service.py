"""The BentoML service: the Fashion-MNIST CNNs behind one class.

    bentoml serve service.service:FashionMNISTService                 # models from the store
    FMNIST_MODEL_DIR=artifacts/onnx bentoml serve service.service:FashionMNISTService

Which models are served: ``baseline`` and ``deeper`` always (required), ``improved`` when
it is there (optional). Where they come from (decided once, at import, by
``FMNIST_MODEL_DIR``):
  * unset: class-level ``bentoml.models.BentoModel`` references to ``fmnist-baseline``,
    ``fmnist-deeper`` and, if the store has it, ``fmnist-improved`` (imported with
    ``python -m service.import_models``), so that ``bentoml build`` packs exactly those
    models into the Bento and a Bento serves them;
  * set: ``<dir>/<name>.onnx`` straight from the folder (tests, the Dockerfile):
    ``baseline.onnx`` and ``deeper.onnx`` must exist, ``improved.onnx`` is served if
    present; the class then holds no store reference at all, because ``bentoml serve``
    resolves every referenced model before it starts.

The public endpoints (docs/api.md) are a mounted Starlette app (service.http_api) so
that every bad input gets the contract's 4xx error body. Concurrent single images are
merged by BentoML's adaptive batcher (one per model, see ``_adaptive_batcher``); batch
requests run onnxruntime directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import bentoml
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher

from fmnist.dataset import CLASS_NAMES
from service.http_api import OverloadedError, create_app
from service.inference import OnnxModel, choose_providers, load_model_dir
from service.metrics import service_metrics
from service.models_store import models_in_store, onnx_path_of, store_name
from service.settings import ServiceSettings

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)

SETTINGS = ServiceSettings.from_env()
if SETTINGS.model_dir is not None:
    SERVED_MODELS = SETTINGS.models_in_dir()
    SETTINGS.check_default_served(SERVED_MODELS, f"FMNIST_MODEL_DIR={SETTINGS.model_dir}")
else:
    SERVED_MODELS = models_in_store()
    SETTINGS.check_default_served(SERVED_MODELS, "the BentoML model store")


def _store_references(cls: T) -> T:
    """``<name>_model = BentoModel("fmnist-<name>:latest")`` for every served store model.

    Added before ``@bentoml.service`` looks at the class, which collects them for
    ``bentoml build`` and resolves them at ``bentoml serve``.
    """
    if SETTINGS.model_dir is None:
        for name in SERVED_MODELS:
            setattr(cls, f"{name}_model", bentoml.models.BentoModel(f"{store_name(name)}:latest"))
    return cls


@bentoml.service(
    name="fmnist",
    workers=SETTINGS.workers,
    traffic={"timeout": 60},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
)
@bentoml.asgi_app(create_app(), path="/")
@_store_references
class FashionMNISTService:
    """Classifies Fashion-MNIST images with the served CNNs (ONNX): baseline, deeper and,
    when available, improved."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.served_models = SERVED_MODELS
        self._ready = False
        providers = choose_providers(SETTINGS.ort_provider)
        intra, inter = SETTINGS.ort_intra_threads, SETTINGS.ort_inter_threads
        if SETTINGS.model_dir is not None:
            self.models = load_model_dir(SETTINGS.model_dir, SERVED_MODELS, intra, inter, providers)
        else:
            self.models = {}
            for name in SERVED_MODELS:
                path, sha256, opset = onnx_path_of(getattr(self, f"{name}_model"))
                self.models[name] = OnnxModel(name, path, intra, inter, providers, sha256, opset)
        self.metrics = service_metrics()
        for name, model in self.models.items():
            seconds = model.warm_up()
            self.metrics.set_model_info(name, model.card.sha256)
            log.info(
                "model %s ready on %s (sha256 %s, warm-up %.3fs)",
                name,
                model.providers[0],
                model.card.sha256[:12],
                seconds,
            )
        # One onnxruntime call at a time per worker: sessions already use the worker's
        # thread budget (FMNIST_ORT_INTRA_THREADS), more would oversubscribe the CPU.
        self._limiter = anyio.CapacityLimiter(1)
        self._batchers = {name: self._adaptive_batcher(name) for name in self.models}
        self._ready = True

    def __is_ready__(self) -> bool:
        return self._ready

    def run_model(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """onnxruntime on (N, 28, 28) pixels → (N, 10) probabilities, with metrics."""
        start = time.perf_counter()
        probabilities = self.models[name].predict(pixels)
        self.metrics.observe_inference(name, len(probabilities), time.perf_counter() - start)
        self.metrics.observe_predictions(name, CLASS_NAMES, probabilities)
        return probabilities

    def _adaptive_batcher(self, name: str) -> Callable[[np.ndarray], Awaitable[np.ndarray]]:
        """BentoML's adaptive batcher (the CorkDispatcher behind ``batchable=True`` APIs).

        Driven directly rather than through a batchable ``@bentoml.api`` plus the service's
        self-client, which costs a second HTTP round trip, JSON encoding and an access-log
        line per image (measured: below the reference service's throughput at 32 clients).
        Like BentoML's APIs it sheds load (503) when ``max_latency_ms`` cannot be met.
        """

        def overloaded() -> np.ndarray:
            raise OverloadedError(
                f"the adaptive batcher of {name} cannot answer within "
                f"{SETTINGS.batching_max_latency_ms} ms; retry later or raise "
                "FMNIST_BATCHING_MAX_LATENCY_MS"
            )

        dispatcher: CorkDispatcher[np.ndarray, np.ndarray] = CorkDispatcher(
            max_latency_in_ms=SETTINGS.batching_max_latency_ms,
            max_batch_size=SETTINGS.batching_max_batch_size,
            fallback=overloaded,
            get_batch_size=lambda _: 1,
        )

        async def run_batch(images: Sequence[np.ndarray]) -> list[np.ndarray]:
            batch = np.stack(images)  # (B, 28, 28)
            probabilities = await anyio.to_thread.run_sync(
                self.run_model, name, batch, limiter=self._limiter
            )
            return list(probabilities)

        return dispatcher(run_batch)  # type: ignore[return-value]

    async def classify_one(self, model: str, pixels: np.ndarray) -> np.ndarray:
        """One (28, 28) image through the model's adaptive batcher → (10,) probabilities."""
        return await self._batchers[model](pixels)

    async def classify_many(self, model: str, pixels: np.ndarray) -> np.ndarray:
        """A client's batch, straight to onnxruntime in a worker thread."""
        return await anyio.to_thread.run_sync(self.run_model, model, pixels, limiter=self._limiter)

    def model_listing(self) -> dict[str, Any]:
        return {
            "default": SETTINGS.default_model,
            "models": [
                {**m.card.to_json(), "providers": m.providers} for m in self.models.values()
            ],
        }
