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

Versions (service/versions.py): every served version of a model is loaded side by side, and
a request names one through the aliases (``baseline`` = its ``production`` version,
``baseline@candidate``, ``baseline@<version>``). The aliases file is checked at start-up
like every setting and re-read by each worker when it changes (service/lifecycle.py),
which is how ``fmnist-promote`` and ``fmnist-rollback`` switch versions in place. A name
with a candidate has its production answers shadowed to it (service/shadow.py). SIGTERM
drains before the server stops (service/lifecycle.py).

The public endpoints (docs/api.md) are a mounted FastAPI app (service.http_api).
Single images go through the version's micro-batcher (service/batching.py); batch requests
too, so that one version runs one batch at a time per worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
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
    versions_of,
)
from service.http_api import create_app
from service.inference import ModelFileError, OnnxModel, ProviderError, choose_providers
from service.lifecycle import AliasWatcher, Drain, stamp
from service.metrics import service_metrics
from service.models_store import onnx_path_of
from service.settings import ServiceSettings, SettingsError, load_settings
from service.shadow import CaptureStore, Comparison, Shadow, capture_reasons
from service.versions import (
    PRODUCTION,
    AliasError,
    AliasTable,
    Routing,
    Target,
    aliases_path,
    check_aliases,
    read_aliases,
)
from service.workers import (
    KeepAliveLimit,
    WorkerConnections,
    inherited_fd,
    own_listening_socket,
    tune_gc,
)

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)
STARTUP_ERRORS = (SettingsError, CatalogError, ModelFileError, ProviderError, AliasError)
# The prediction endpoints, excluded from BentoML's per-request tracing unless FMNIST_TRACING
# (a span costs ~0.2 ms of CPU a request). "/v2/models" covers the Open Inference Protocol's
# infer, metadata and readiness paths (service/v2.py).
PREDICTION_PATHS = ("/classify", "/classify_batch", "/classify_npy", "/v2/models")


def _fail(exc: Exception, debug: bool) -> NoReturn:
    """One line on stderr and exit 2 (the traceback instead with FMNIST_DEBUG=1)."""
    if debug:
        raise exc
    print(f"fmnist-service: error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _is_worker() -> bool:
    return bentoml.server_context.worker_index is not None


@dataclass(frozen=True)
class Startup:
    """What the checks before any worker found: settings, served versions, aliases."""

    settings: ServiceSettings
    sources: list[ModelSource]
    providers: list[str]
    aliases_file: Path
    routing: Routing


def _startup() -> Startup:
    """Settings, the served versions, their aliases and the providers, checked; exit 2
    with one line if not."""
    debug = os.environ.get("FMNIST_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        settings = load_settings()
        aliases_file = aliases_path(settings.aliases_file, settings.model_dir)
        table = read_aliases(aliases_file)
        if settings.model_dir is not None:
            sources = models_in_dir(settings.model_dir, settings.models)
            where = f"FMNIST_MODEL_DIR={settings.model_dir}"
        else:
            sources = models_in_store(settings.models, table)
            where = "the BentoML model store"
        versions = versions_of(sources)
        default = settings.choose_default(tuple(versions), where)
        routing = Routing(versions, check_aliases(table, versions, str(aliases_file)), default)
        providers = choose_providers(settings.ort_provider)
        if settings.capture_dir is not None:
            check_writable(settings.capture_dir)
        warnings = []
        if not _is_worker():
            # bentoml serve / build, before any worker: load every file once, so that a
            # corrupt file or a broken contract stops the command here.
            for source in sources:
                path = _path_of(source)
                model = OnnxModel(source.name, path, 1, 1, providers)
                if reference_of(model.card.metadata, str(path)) is None:
                    warnings.append(missing_reference_warning(source.name, str(path)))
    except STARTUP_ERRORS as exc:
        _fail(exc, debug)
    # Only a start that goes on warns: a failed one says its one line and nothing else.
    for warning in warnings:
        print(f"fmnist-service: warning: {warning}", file=sys.stderr, flush=True)
    return Startup(settings, sources, providers, aliases_file, routing)


def check_writable(folder: Path) -> None:
    """FMNIST_CAPTURE_DIR must be a folder the service can write (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SettingsError(
            f"FMNIST_CAPTURE_DIR={folder} cannot be written ({exc.strerror or exc}); expected "
            "a folder the service may create files in (or unset it: no capture)"
        ) from None


def _path_of(source: ModelSource) -> Path:
    if source.path is not None:
        return source.path
    assert source.store_tag is not None  # a source is a file or a store model
    path, _, _ = onnx_path_of(bentoml.models.get(source.store_tag))
    return path


STARTUP = _startup()
SETTINGS, SOURCES, PROVIDERS = STARTUP.settings, STARTUP.sources, STARTUP.providers
SERVED_MODELS: tuple[str, ...] = STARTUP.routing.names
DEFAULT_MODEL = STARTUP.routing.default
WORKER_INDEX = bentoml.server_context.worker_index
LISTENING_FD = inherited_fd() if WORKER_INDEX is not None else None
if (
    WORKER_INDEX is not None
    and SETTINGS.reuse_port
    and LISTENING_FD is not None
    and own_listening_socket(LISTENING_FD, WORKER_INDEX)
):
    log.info("worker %d listens on a SO_REUSEPORT socket of its own", WORKER_INDEX)
DRAIN = Drain(SETTINGS.drain_s, SETTINGS.drain_quiet_s, LISTENING_FD)


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


def _attribute(source: ModelSource) -> str:
    return f"model_{source.name}_{source.version}"


def _store_references(cls: T) -> T:
    """``model_<name>_<version> = BentoModel("fmnist-<name>:<version>")`` for every served
    store version.

    Added before ``@bentoml.service`` looks at the class, which collects them for
    ``bentoml build`` and resolves them at ``bentoml serve``.
    """
    for source in SOURCES:
        if source.store_tag is not None:
            setattr(cls, _attribute(source), bentoml.models.BentoModel(source.store_tag))
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
        self.worker = str(WORKER_INDEX or 0)
        self._ready = False
        self.metrics = service_metrics()
        self.metrics.worker_requests.labels(self.worker)  # at 0: a worker never used shows
        self.metrics.rebalanced.labels(self.worker)
        self._policy = BatchingPolicy(
            max_batch_size=SETTINGS.batching_max_batch_size,
            max_wait_s=SETTINGS.batching_max_wait_s,
            max_queue=SETTINGS.batching_max_queue,
        )
        self.models: dict[tuple[str, str], OnnxModel] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._load_lock = threading.Lock()
        try:
            for source in SOURCES:
                self._add_version(source)
        except STARTUP_ERRORS as exc:
            self._stop_server(str(exc))
        self.routing = STARTUP.routing
        self._publish_routing({}, self.routing)
        try:
            self.shadow = self._shadow()
        except OSError as exc:  # the capture folder, writable at start-up, is no longer
            self._stop_server(f"FMNIST_CAPTURE_DIR cannot be used ({exc})")
        self._watcher = AliasWatcher(
            STARTUP.aliases_file,
            SETTINGS.aliases_poll_s,
            self.apply_aliases,
            lambda result: self.metrics.aliases_reloads.labels(result).inc(),
            stamp(STARTUP.aliases_file),
        )
        if WORKER_INDEX is not None:
            self._watcher.start()
        tune_gc()
        self._ready = True

    # -- what a request may name ---------------------------------------------------------

    @property
    def served_models(self) -> tuple[str, ...]:
        return self.routing.names

    @property
    def default_model(self) -> str:
        return self.routing.default

    def resolve(self, raw: object) -> Target:
        return self.routing.resolve(raw)

    # -- loading versions ----------------------------------------------------------------

    def _path(self, source: ModelSource) -> tuple[Path, str | None, int | None]:
        if source.path is not None:
            return source.path, None, None
        declared = getattr(self, _attribute(source), None)
        assert source.store_tag is not None  # a source is a file or a store model
        stored = declared if declared is not None else bentoml.models.get(source.store_tag)
        return onnx_path_of(stored)

    def _add_version(self, source: ModelSource) -> None:
        """Load, warm up and register one version (at start, or for new aliases)."""
        intra, inter = SETTINGS.ort_intra_threads, SETTINGS.ort_inter_threads
        path, sha256, opset = self._path(source)
        model = OnnxModel(source.name, path, intra, inter, PROVIDERS, sha256, opset)
        seconds = model.warm_up()
        key = (source.name, source.version)
        self.metrics.set_model_info(source.name, model.card.sha256)
        self.metrics.start_model(source.name, CLASS_NAMES)
        self.metrics.version_images.labels(*key)
        self._batchers[key] = MicroBatcher(
            source.name,  # the model label of fmnist_shed_requests_total
            model.predict,
            self._policy,
            self._observer(*key),
        )
        self.models[key] = model
        log.info(
            "model %s@%s ready on %s (sha256 %s, warm-up %.3fs)",
            *key,
            model.providers[0],
            model.card.sha256[:12],
            seconds,
        )

    def _publish_routing(self, before: dict[str, dict[str, str]], routing: Routing) -> None:
        self.metrics.set_aliases(before, routing.aliases)
        for name, aliases in routing.aliases.items():
            production = self.models[(name, aliases[PRODUCTION])]
            reference = reference_of(production.card.metadata, str(production.path))
            if reference is not None:
                self.metrics.set_reference(name, reference)
            candidate = routing.candidate_of(name)
            if candidate is not None:
                self.metrics.start_shadow(name, candidate, CLASS_NAMES)

    def apply_aliases(self, table: AliasTable) -> None:
        """A changed aliases file: load what it names that is not loaded, then switch (all
        at once); raises, changing nothing, when it cannot (service/lifecycle.py)."""
        with self._load_lock:
            current = self.routing
            if SETTINGS.model_dir is not None:
                sources = models_in_dir(SETTINGS.model_dir, SETTINGS.models)
            else:
                sources = models_in_store(current.names, table)
            sources = [s for s in sources if s.name in current.names]
            versions = versions_of(sources)
            aliases = check_aliases(table, versions, str(STARTUP.aliases_file))
            for source in sources:
                if (source.name, source.version) not in self.models:
                    self._add_version(source)
            loaded = {
                name: tuple(v for (n, v) in self.models if n == name) for name in current.names
            }
            routing = Routing(loaded, aliases, current.default, current.generation + 1)
            self.routing = routing  # the switch: one assignment
            self._publish_routing(current.aliases, routing)
        moved = [
            f"{name}@{alias} {current.aliases.get(name, {}).get(alias, '-')} -> {version}"
            for name, named in aliases.items()
            for alias, version in named.items()
            if current.aliases.get(name, {}).get(alias) != version
        ]
        log.warning("aliases applied: %s", "; ".join(moved) or "no change")

    @staticmethod
    def _stop_server(message: str) -> NoReturn:
        """A worker that cannot load its models stops the server instead of restarting."""
        print(f"fmnist-service: error: {message}", file=sys.stderr, flush=True)
        os.kill(os.getppid(), signal.SIGTERM)
        raise SystemExit(2)

    def __is_ready__(self) -> bool:
        return self._ready and not DRAIN.active

    def _observer(self, name: str, version: str) -> BatchObserver:
        """After each model call: its metrics, then the predicted classes and confidences.

        Outside the timed call, so that fmnist_inference_seconds is onnxruntime's time
        alone (the per-image bookkeeping is ~4 % of a 64-image call)."""
        batch = self.metrics.batch_observer(name)
        predictions = self.metrics.prediction_observer(name, CLASS_NAMES, SETTINGS.low_confidence)
        images = self.metrics.version_images.labels(name, version)

        def observe(probabilities: np.ndarray, queued: float, ran: float) -> None:
            batch(len(probabilities), queued, ran)
            predictions(probabilities)
            images.inc(len(probabilities))

        return observe

    # -- shadow traffic ------------------------------------------------------------------

    def _shadow(self) -> Shadow | None:
        if SETTINGS.shadow_sample_rate <= 0:
            return None
        store = None
        if SETTINGS.capture_dir is not None:
            share = SETTINGS.capture_max_bytes // SETTINGS.workers  # the bound, all workers
            store = CaptureStore(SETTINGS.capture_dir / f"worker-{self.worker}", share)
        metrics = self.metrics
        # The candidate's own batchers: shadow work merges into shared calls, and its answers
        # stay out of the production model's metrics (no observer).
        batchers: dict[tuple[str, str], MicroBatcher] = {}

        def candidate_of(name: str) -> tuple[str, Any] | None:
            version = self.routing.candidate_of(name)
            if version is None:
                return None
            key = (name, version)
            if key not in batchers:
                batchers[key] = MicroBatcher(name, self.models[key].predict, self._policy)
            return version, batchers[key].submit

        def observe(c: Comparison) -> None:
            metrics.shadow_seconds.labels(c.name).observe(c.seconds)
            p_top = c.production_answers.argmax(axis=1)
            agree = p_top == c.candidate_answers.argmax(axis=1)
            seen = np.bincount(p_top, minlength=len(CLASS_NAMES))
            same = np.bincount(p_top[agree], minlength=len(CLASS_NAMES))
            for index in np.flatnonzero(seen).tolist():
                for agreement, count in (
                    ("agree", int(same[index])),
                    ("disagree", int(seen[index] - same[index])),
                ):
                    if count:
                        metrics.shadow_predictions.labels(
                            c.name, c.candidate, CLASS_NAMES[index], agreement
                        ).inc(count)
            if store is not None:
                reasons = capture_reasons(
                    c.production_answers, c.candidate_answers, SETTINGS.low_confidence
                )
                if any(reasons):  # file I/O off the event loop
                    asyncio.get_running_loop().run_in_executor(None, capture, c, reasons)

        def capture(c: Comparison, reasons: list[list[str]]) -> None:
            assert store is not None
            for i, why in enumerate(reasons):
                if not why:
                    continue
                store.add(
                    "+".join(why),
                    {
                        "image": np.asarray(c.pixels[i]).astype(np.uint8),
                        "production": c.production_answers[i],
                        "candidate": c.candidate_answers[i],
                        "model": np.array(c.name),
                        "versions": np.array([c.production, c.candidate]),
                    },
                )
                for reason in why:
                    metrics.shadow_captured.labels(c.name, reason).inc()

        return Shadow(
            candidate_of,
            SETTINGS.shadow_sample_rate,
            SETTINGS.shadow_max_queue,
            observe,
            lambda name, n: metrics.shadow_dropped.labels(name).inc(n),
        )

    def _after_answer(self, target: Target, pixels: np.ndarray, answers: np.ndarray) -> None:
        """Production's answers also go to the candidate, when the name has one."""
        if self.shadow is not None and target.alias == PRODUCTION:
            self.shadow.offer(target.name, target.version, pixels, answers)

    # -- the model calls -----------------------------------------------------------------

    async def classify_one(self, target: Target, pixels: np.ndarray) -> np.ndarray:
        """One (28, 28) image through the version's micro-batcher → (10,) probabilities."""
        answers = await self._batchers[target.key].submit(pixels[None])
        self._after_answer(target, pixels[None], answers)
        return answers[0]

    async def classify_many(self, target: Target, pixels: np.ndarray) -> np.ndarray:
        """A client's (N, 28, 28) batch through the same batcher → (N, 10) probabilities."""
        answers = await self._batchers[target.key].submit(pixels)
        self._after_answer(target, pixels, answers)
        return answers

    def model_listing(self) -> dict[str, Any]:
        routing = self.routing
        production = [(n, a[PRODUCTION]) for n, a in routing.aliases.items()]
        others = [key for key in self.models if key not in production]
        return {
            "default": routing.default,
            "aliases": routing.aliases,
            "models": [
                {
                    **self.models[key].card.to_json(),
                    "version": key[1],
                    "aliases": routing.aliases_of(*key),
                    "providers": self.models[key].providers,
                }
                for key in [*production, *others]
                if key[0] in routing.names
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
    drain=DRAIN,
)
