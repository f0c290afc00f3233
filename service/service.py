"""The BentoML service: the exported Fashion-MNIST CNNs behind one class.

    bentoml serve service.service:FashionMNISTService                 # models from the store
    FMNIST_MODEL_DIR=artifacts/onnx bentoml serve service.service:FashionMNISTService

Which models are served (service/catalog.py): the exported ONNX files it is given, named
by their metadata — every ``fmnist-<name>`` in the BentoML model store (imported with
``python -m service.import_models``) or, with ``FMNIST_MODEL_DIR``, every exported
``*.onnx`` in that folder; ``FMNIST_MODELS`` restricts and orders them.

Fail fast: the settings, the catalog, the execution provider and every model file are
checked when this module is imported by ``bentoml serve`` (and ``bentoml build``), before
any worker starts; a problem ends the command with exit code 2 and one line that names
the variable or the file and what is expected (a traceback only with ``FMNIST_DEBUG=1``).
A worker that still fails to start stops the whole server rather than being restarted
forever.

The public endpoints (docs/api.md) are a mounted FastAPI app (service.http_api).
Single images go through the model's micro-batcher (service/batching.py); batch requests
too, so that one model runs one batch at a time per worker.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import bentoml
import numpy as np

from fmnist.dataset import CLASS_NAMES
from service.batching import BatchingPolicy, BatchObserver, MicroBatcher
from service.catalog import (
    CatalogError,
    ModelSource,
    missing_reference_warning,
    models_in_dir,
    models_in_store,
    reference_of,
)
from service.http_api import create_app
from service.inference import ModelFileError, OnnxModel, ProviderError, choose_providers
from service.metrics import service_metrics
from service.models_store import onnx_path_of
from service.settings import ServiceSettings, SettingsError, load_settings
from service.workers import (
    KeepAliveLimit,
    WorkerConnections,
    inherited_fd,
    own_listening_socket,
    tune_gc,
)

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)
STARTUP_ERRORS = (SettingsError, CatalogError, ModelFileError, ProviderError)
# The prediction endpoints, excluded from BentoML's per-request tracing unless FMNIST_TRACING
# (a span costs ~0.2 ms of CPU a request). "/v2/models" covers the Open Inference Protocol's
# infer, metadata and readiness paths (service/v2.py).
PREDICTION_PATHS = ("/classify", "/classify_batch", "/classify_npy", "/v2/models")


def _fail(message: str, debug: bool) -> NoReturn:
    """One line on stderr and exit 2 (the traceback too with FMNIST_DEBUG=1)."""
    if debug:
        raise
    print(f"fmnist-service: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _is_worker() -> bool:
    return bentoml.server_context.worker_index is not None


def _startup() -> tuple[ServiceSettings, list[ModelSource], list[str]]:
    """Settings, the served models and the providers, checked; exit 2 with one line if not."""
    debug = os.environ.get("FMNIST_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        settings = load_settings()
        if settings.model_dir is not None:
            sources = models_in_dir(settings.model_dir, settings.models)
            where = f"FMNIST_MODEL_DIR={settings.model_dir}"
        else:
            sources = models_in_store(settings.models)
            where = "the BentoML model store"
        settings.choose_default(tuple(s.name for s in sources), where)
        providers = choose_providers(settings.ort_provider)
        warnings = []
        if not _is_worker():
            # bentoml serve / build, before any worker: load every file once, so that a
            # corrupt file or a broken contract stops the command here.
            for source in sources:
                if source.path is not None:
                    path = source.path
                else:
                    assert source.store_tag is not None  # a source is a file or a store model
                    path, _, _ = onnx_path_of(bentoml.models.get(source.store_tag))
                model = OnnxModel(source.name, path, 1, 1, providers)
                if reference_of(model.card.metadata, str(path)) is None:
                    warnings.append(missing_reference_warning(source.name, str(path)))
    except STARTUP_ERRORS as exc:
        _fail(str(exc), debug)
    # Only a start that goes on warns: a failed one says its one line and nothing else.
    for warning in warnings:
        print(f"fmnist-service: warning: {warning}", file=sys.stderr, flush=True)
    return settings, sources, providers


SETTINGS, SOURCES, PROVIDERS = _startup()
SERVED_MODELS: tuple[str, ...] = tuple(s.name for s in SOURCES)
DEFAULT_MODEL = SETTINGS.choose_default(SERVED_MODELS, "")
WORKER_INDEX = bentoml.server_context.worker_index
if WORKER_INDEX is not None and SETTINGS.reuse_port:
    _fd = inherited_fd()
    if _fd is not None and own_listening_socket(_fd, WORKER_INDEX):
        log.info("worker %d listens on a SO_REUSEPORT socket of its own", WORKER_INDEX)


def _connection_table() -> WorkerConnections | None:
    """This worker's view of every worker's connection count (service/workers.py), kept
    beside the Prometheus files that ``bentoml serve`` gives all workers of one server."""
    shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if WORKER_INDEX is None or SETTINGS.workers < 2 or not SETTINGS.balance_connections:
        return None
    if not shared_dir or not os.path.isdir(shared_dir):
        log.warning("no PROMETHEUS_MULTIPROC_DIR: connections are not balanced over workers")
        return None
    return WorkerConnections.open(
        Path(shared_dir) / "fmnist-worker-connections.bin", SETTINGS.workers, WORKER_INDEX
    )


def _store_references(cls: T) -> T:
    """``<name>_model = BentoModel("fmnist-<name>:<version>")`` for every served store model.

    Added before ``@bentoml.service`` looks at the class, which collects them for
    ``bentoml build`` and resolves them at ``bentoml serve``.
    """
    for source in SOURCES:
        if source.store_tag is not None:
            setattr(cls, f"{source.name}_model", bentoml.models.BentoModel(source.store_tag))
    return cls


@bentoml.service(
    name="fmnist",
    workers=SETTINGS.workers,
    traffic={"timeout": 60},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing={"excluded_urls": [] if SETTINGS.tracing else list(PREDICTION_PATHS)},
)
@bentoml.asgi_app(create_app(), path="/")
@_store_references
class FashionMNISTService:
    """Classifies Fashion-MNIST images with the exported CNNs it is given (ONNX)."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.served_models = SERVED_MODELS
        self.default_model = DEFAULT_MODEL
        self.worker = str(WORKER_INDEX or 0)
        self._ready = False
        try:
            self.models = self._load_models()
        except STARTUP_ERRORS as exc:
            self._stop_server(str(exc))
        self.metrics = service_metrics()
        self.metrics.worker_requests.labels(self.worker)  # at 0: a worker never used shows
        self.metrics.rebalanced.labels(self.worker)
        for name, model in self.models.items():
            seconds = model.warm_up()
            self.metrics.set_model_info(name, model.card.sha256)
            self.metrics.start_model(name, CLASS_NAMES)
            reference = reference_of(model.card.metadata, str(model.path))
            if reference is not None:
                self.metrics.set_reference(name, reference)
            log.info(
                "model %s ready on %s (sha256 %s, warm-up %.3fs)",
                name,
                model.providers[0],
                model.card.sha256[:12],
                seconds,
            )
        policy = BatchingPolicy(
            max_batch_size=SETTINGS.batching_max_batch_size,
            max_wait_s=SETTINGS.batching_max_wait_s,
            max_queue=SETTINGS.batching_max_queue,
        )
        self._batchers = {
            name: MicroBatcher(name, self.models[name].predict, policy, self._observer(name))
            for name in self.models
        }
        tune_gc()
        self._ready = True

    def _load_models(self) -> dict[str, OnnxModel]:
        intra, inter = SETTINGS.ort_intra_threads, SETTINGS.ort_inter_threads
        models = {}
        for source in SOURCES:
            if source.path is not None:
                models[source.name] = OnnxModel(source.name, source.path, intra, inter, PROVIDERS)
            else:
                path, sha256, opset = onnx_path_of(getattr(self, f"{source.name}_model"))
                models[source.name] = OnnxModel(
                    source.name, path, intra, inter, PROVIDERS, sha256, opset
                )
        return models

    @staticmethod
    def _stop_server(message: str) -> NoReturn:
        """A worker that cannot load its models stops the server instead of restarting."""
        print(f"fmnist-service: error: {message}", file=sys.stderr, flush=True)
        os.kill(os.getppid(), signal.SIGTERM)
        raise SystemExit(2)

    def __is_ready__(self) -> bool:
        return self._ready

    def _observer(self, name: str) -> BatchObserver:
        """After each model call: its metrics, then the predicted classes and confidences.

        Outside the timed call, so that fmnist_inference_seconds is onnxruntime's time
        alone (the per-image bookkeeping is ~4 % of a 64-image call)."""
        batch = self.metrics.batch_observer(name)
        predictions = self.metrics.prediction_observer(name, CLASS_NAMES, SETTINGS.low_confidence)

        def observe(probabilities: np.ndarray, queued: float, ran: float) -> None:
            batch(len(probabilities), queued, ran)
            predictions(probabilities)

        return observe

    async def classify_one(self, model: str, pixels: np.ndarray) -> np.ndarray:
        """One (28, 28) image through the model's micro-batcher → (10,) probabilities."""
        return (await self._batchers[model].submit(pixels[None]))[0]

    async def classify_many(self, model: str, pixels: np.ndarray) -> np.ndarray:
        """A client's (N, 28, 28) batch through the same batcher → (N, 10) probabilities."""
        return await self._batchers[model].submit(pixels)

    def model_listing(self) -> dict[str, Any]:
        return {
            "default": self.default_model,
            "models": [
                {**m.card.to_json(), "providers": m.providers} for m in self.models.values()
            ],
        }


# mypy ignores what a class decorator returns (python/mypy#3135): this is a bentoml Service.
_WORKER = str(WORKER_INDEX or 0)
FashionMNISTService.add_asgi_middleware(  # type: ignore[attr-defined]
    KeepAliveLimit,
    max_requests=SETTINGS.keepalive_requests,
    balance=_connection_table(),
    on_tick=lambda active: service_metrics().worker_connections.labels(_WORKER).set(active),
    on_rebalance=lambda: service_metrics().rebalanced.labels(_WORKER).inc(),
)
