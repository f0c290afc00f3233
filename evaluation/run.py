"""One evaluation run: the test set through the live service, scored, and checked against
the same ONNX files run in-process; :class:`Evaluation` is what it produced, the data every
report file is built from.

    ev = evaluate(EvalConfig(url="http://127.0.0.1:3000", out=Path("reports/eval")))
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from evaluation.client import (
    ModelListing,
    RetryPolicy,
    ServedModel,
    ServedPredictions,
    ServiceClient,
    ServiceError,
)
from evaluation.gate import GateDecision, GateRule, decide, shadow_agreement
from evaluation.metrics import (
    ModelMetrics,
    PairedComparison,
    ServingSkew,
    compare_every_pair,
    model_metrics,
    serving_skew,
)
from evaluation.onnx_reference import OnnxReferenceError, onnx_probabilities
from fmnist.contract import file_sha256, onnx_filename
from fmnist.dataset import FILES, load_raw
from fmnist.registry import study_models

PRODUCTION, CANDIDATE = "production", "candidate"  # the aliases of service/versions.py

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Everything one run needs; ``fmnist-eval``'s defaults are these."""

    url: str
    out: Path
    models: tuple[str, ...] = ()  # empty: every model the service lists
    data_dir: Path | None = None
    onnx_dir: Path | None = Path("artifacts/onnx")
    limit: int | None = None
    batch_size: int = 500
    concurrency: int = 4
    timeout: float = 10.0  # seconds per try of one request
    retry: RetryPolicy = RetryPolicy()
    verify: bool = True  # check the test files' md5 against the official ones
    progress: bool = True
    seed: int = 0
    gate: str | None = None  # a model name: its candidate against its production version
    gate_rule: GateRule = GateRule()

    @property
    def evaluated(self) -> tuple[str, ...]:
        """The models to query: --models, or with --gate NAME its two aliases."""
        if self.gate is not None:
            return (f"{self.gate}@{PRODUCTION}", f"{self.gate}@{CANDIDATE}")
        return self.models


@dataclass(frozen=True)
class DatasetInfo:
    folder: str
    images: int
    official: bool  # test files match the published Fashion-MNIST md5 checksums
    limit: int | None


@dataclass(frozen=True)
class ModelResult:
    name: str
    served: ServedPredictions
    metrics: ModelMetrics
    info: ServedModel | None
    skew: ServingSkew | None
    skew_note: str = ""  # why the skew was not checked


@dataclass(frozen=True)
class Evaluation:
    url: str
    dataset: DatasetInfo
    images: np.ndarray  # (N, 28, 28) uint8, for the galleries
    labels: np.ndarray  # (N,)
    models: dict[str, ModelResult]
    comparisons: list[PairedComparison]  # every pair, Holm-adjusted together
    created: str
    command: str
    environment: dict[str, str] = field(default_factory=dict)
    gate: GateDecision | None = None  # with --gate: the promotion gate's decision


def in_study(*models: str) -> bool:
    """Whether the study trained and reported on every one of ``models``."""
    return all(m in study_models() for m in models)


def load_test_images(cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray, DatasetInfo]:
    arrays, sums, folder = load_raw(cfg.data_dir, verify=cfg.verify)
    official = all(sums[FILES[k][0]] == FILES[k][1] for k in ("test_images", "test_labels"))
    images, labels = arrays["test_images"], arrays["test_labels"].astype(np.int64)
    if cfg.limit is not None:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    return images, labels, DatasetInfo(str(folder), len(labels), official, cfg.limit)


async def query_service(
    cfg: EvalConfig, images: np.ndarray
) -> tuple[ModelListing, dict[str, ServedPredictions], str]:
    """The model listing, then every image through each model in turn, then (for the gate)
    the service's /metrics.

    The models are ``cfg.evaluated``, or, when none were named, every model the service
    lists (in its order).
    """
    async with ServiceClient(
        cfg.url, timeout=cfg.timeout, retry=cfg.retry, concurrency=cfg.concurrency
    ) as client:
        listing = await client.list_models()
        unknown = [m for m in cfg.evaluated if m not in listing.models]
        if unknown:
            raise ServiceError(
                f"the service does not serve {', '.join(unknown)}; it offers "
                f"{', '.join(listing.models) or 'no models'}"
            )
        names = pinned(cfg, listing) if cfg.gate is not None else cfg.evaluated or listing.names
        if not names:
            raise ServiceError(f"GET {cfg.url}/models lists no models; nothing to evaluate")
        served = {}
        for name in names:
            served[name] = await client.predict(images, name, cfg.batch_size, cfg.progress)
            log.info(
                "%s: %d images in %.2fs (%.0f images/s)",
                name,
                len(images),
                served[name].seconds,
                served[name].images_per_second,
            )
        metrics_text = await client.metrics_text() if cfg.gate is not None else ""
    return listing, served, metrics_text


def check_skew(
    cfg: EvalConfig,
    name: str,
    served: ServedPredictions,
    images: np.ndarray,
    served_sha: str | None,
) -> tuple[ServingSkew | None, str]:
    """Skew against the local ONNX file, or None and the reason it was not checked."""
    if cfg.onnx_dir is None:
        return None, "no --onnx-dir given"
    path = cfg.onnx_dir / onnx_filename(name)
    if not path.is_file():
        return None, f"no local ONNX file {path}"
    try:
        local = onnx_probabilities(path, images)
    except OnnxReferenceError as exc:
        log.warning("serving skew of %s not checked: %s", name, exc)
        return None, f"local ONNX file could not be run: {exc}"
    return serving_skew(
        served.class_index, served.probabilities, local, served_sha, file_sha256(path)
    ), ""


def evaluate(cfg: EvalConfig, command: str = "") -> Evaluation:
    images, labels, dataset = load_test_images(cfg)
    listing, served, metrics_text = asyncio.run(query_service(cfg, images))
    results = {}
    for name, s in served.items():
        info = listing.models.get(name)
        skew, note = check_skew(cfg, name, s, images, info.sha256 if info else None)
        results[name] = ModelResult(
            name,
            s,
            model_metrics(labels, s.class_index, s.confidence, s.probabilities, seed=cfg.seed),
            info,
            skew,
            note,
        )
    predictions = {name: s.class_index for name, s in served.items()}
    decision = None
    if cfg.gate is not None:
        decision = gate_decision(cfg, listing, results, labels, metrics_text)
    return Evaluation(
        url=cfg.url,
        dataset=dataset,
        images=images,
        labels=labels,
        models=results,
        comparisons=compare_every_pair(predictions, labels, seed=cfg.seed),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=command,
        environment=_environment(images),
        gate=decision,
    )


def pinned(cfg: EvalConfig, listing: ModelListing) -> tuple[str, ...]:
    """The gate's two aliases as the versions they point to now: NAME@<version> each, so
    that both are scored on exactly those versions even if an alias moves meanwhile, and
    the gate's test images are not shadowed (only live traffic counts as live agreement)."""
    return tuple(
        f"{cfg.gate}@{listing.models[key].raw.get('version', key.partition('@')[2])}"
        for key in cfg.evaluated
    )


def gate_decision(
    cfg: EvalConfig,
    listing: ModelListing,
    results: dict[str, ModelResult],
    labels: np.ndarray,
    metrics_text: str,
) -> GateDecision:
    """evaluation/gate.py's rule on the two aliases' answers and the live shadow counters."""
    assert cfg.gate is not None
    keys = pinned(cfg, listing)
    versions = tuple(k.partition("@")[2] for k in keys)
    shadow = shadow_agreement(metrics_text, cfg.gate, versions[1])
    return decide(
        cfg.gate,
        (versions[0], versions[1]),
        labels,
        (results[keys[0]].served.class_index, results[keys[1]].served.class_index),
        (results[keys[0]].metrics, results[keys[1]].metrics),
        shadow,
        cfg.gate_rule,
        seed=cfg.seed,
    )


def _environment(images: np.ndarray) -> dict[str, str]:
    env = {
        "python": platform.python_version(),
        "host": platform.node(),
        "test images sha256": hashlib.sha256(images.tobytes()).hexdigest()[:16],
    }
    for pkg in ("numpy", "onnxruntime", "httpx", "scikit-learn"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env
