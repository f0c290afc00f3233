"""Evaluate the live classification service on the Fashion-MNIST test set.

    fmnist-eval --url http://127.0.0.1:3000 --out reports/eval
    fmnist-eval --url http://127.0.0.1:3000 --out /tmp/quick --limit 1000 --models baseline

Evaluates every model the service lists in ``GET /models`` (or those named with
--models) and compares every pair of them (exact McNemar test, paired bootstrap). Sends
the test images to ``POST /classify_npy``, scores what comes back, checks it against the
same ONNX files run in-process (``--onnx-dir``), and writes OUT/report.html (one
self-contained file), report.md, metrics.json, predictions.csv and PNG figures. OUT
appears complete or not at all.

Exit status: 0 done; 1 the service failed (unreachable after retries, refused a request,
or broke the contract); 2 bad input (dataset missing, OUT not writable); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import itertools
import logging
import platform
import shlex
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from evaluation.client import (
    ModelListing,
    RetryPolicy,
    ServedPredictions,
    ServiceClient,
    ServiceError,
)
from evaluation.local import LocalModelError, file_sha256, onnx_probabilities
from evaluation.metrics import ServingSkew, compare_models, model_metrics, serving_skew
from evaluation.report import ReportError, write_report
from evaluation.results import DatasetInfo, Evaluation, ModelResult
from fmnist.dataset import FILES, DatasetError, load_raw

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    url: str
    out: Path
    models: tuple[str, ...] = ()  # empty: every model the service lists
    data_dir: Path | None = None
    onnx_dir: Path | None = Path("artifacts/onnx")
    limit: int | None = None
    batch_size: int = 500
    concurrency: int = 4
    timeout: float = 60.0
    retry: RetryPolicy = RetryPolicy()
    verify: bool = True
    progress: bool = True
    seed: int = 0


def load_test_images(cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray, DatasetInfo]:
    arrays, sums, folder = load_raw(cfg.data_dir, verify=cfg.verify)
    official = all(sums[FILES[k][0]] == FILES[k][1] for k in ("test_images", "test_labels"))
    images, labels = arrays["test_images"], arrays["test_labels"].astype(np.int64)
    if cfg.limit is not None:
        images, labels = images[: cfg.limit], labels[: cfg.limit]
    return images, labels, DatasetInfo(str(folder), len(labels), official, cfg.limit)


async def query_service(
    cfg: EvalConfig, images: np.ndarray
) -> tuple[ModelListing, dict[str, ServedPredictions]]:
    """The model listing, then every image through each model in turn.

    The models are ``cfg.models``, or, when none were named, every model the service lists
    (in its order).
    """
    async with ServiceClient(
        cfg.url, timeout=cfg.timeout, retry=cfg.retry, concurrency=cfg.concurrency
    ) as client:
        listing = await client.list_models()
        unknown = [m for m in cfg.models if m not in listing.models]
        if unknown:
            raise ServiceError(
                f"the service does not serve {', '.join(unknown)}; it offers "
                f"{', '.join(listing.models) or 'no models'}"
            )
        names = cfg.models or tuple(listing.models)
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
    return listing, served


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
    path = cfg.onnx_dir / f"{name}.onnx"
    if not path.is_file():
        return None, f"no local ONNX file {path}"
    try:
        local = onnx_probabilities(path, images)
    except LocalModelError as exc:
        log.warning("serving skew of %s not checked: %s", name, exc)
        return None, f"local ONNX file could not be run: {exc}"
    return serving_skew(
        served.class_index, served.probabilities, local, served_sha, file_sha256(path)
    ), ""


def evaluate(cfg: EvalConfig, command: str = "") -> Evaluation:
    images, labels, dataset = load_test_images(cfg)
    listing, served = asyncio.run(query_service(cfg, images))
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
    comparisons = [
        compare_models(a, served[a].class_index, b, served[b].class_index, labels, seed=cfg.seed)
        for a, b in itertools.combinations(served, 2)
    ]
    return Evaluation(
        url=cfg.url,
        dataset=dataset,
        images=images,
        labels=labels,
        models=results,
        comparisons=comparisons,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=command,
        environment=_environment(images),
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


def parse_args(argv: list[str] | None) -> EvalConfig:
    p = argparse.ArgumentParser(
        prog="fmnist-eval",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:3000")
    p.add_argument("--out", type=Path, required=True, help="report folder (replaced atomically)")
    p.add_argument(
        "--models",
        nargs="+",
        default=argparse.SUPPRESS,
        help="models to evaluate (default: every model the service lists in GET /models)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the IDX files (default: $FMNIST_DATA_DIR, Debian, cache)",
    )
    p.add_argument(
        "--onnx-dir",
        type=Path,
        default=Path("artifacts/onnx"),
        help="local MODEL.onnx files for the serving-skew check",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--batch-size", type=int, default=500, help="images per request")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument(
        "--retries",
        type=int,
        default=5,
        help="tries per request on connection errors and 502/503/504",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=0.5,
        help="first wait between tries in seconds; doubles each time, at most 8",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the dataset md5 check (synthetic data; the report says so)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    a = p.parse_args(argv)
    for flag, value in (
        ("--batch-size", a.batch_size),
        ("--concurrency", a.concurrency),
        ("--retries", a.retries),
        ("--limit", a.limit),
    ):
        if value is not None and value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    return EvalConfig(
        url=a.url,
        out=a.out,
        models=tuple(dict.fromkeys(getattr(a, "models", ()))),
        data_dir=a.data_dir,
        onnx_dir=a.onnx_dir,
        limit=a.limit,
        batch_size=a.batch_size,
        concurrency=a.concurrency,
        timeout=a.timeout,
        retry=RetryPolicy(attempts=a.retries, backoff=a.backoff),
        verify=not a.no_verify,
        progress=not a.no_progress,
        seed=a.seed,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    command = shlex.join(["fmnist-eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        ev = evaluate(cfg, command)
        out = write_report(ev, cfg.out)
    except KeyboardInterrupt:
        print("fmnist-eval: interrupted; no report written", file=sys.stderr)
        return 130
    except (DatasetError, ReportError, OSError) as exc:
        print(f"fmnist-eval: error: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"fmnist-eval: error: {exc}", file=sys.stderr)
        return 1
    for name, r in ev.models.items():
        acc = r.metrics.accuracy
        print(
            f"{name}: accuracy {acc.estimate:.2%} [{acc.low:.2%}, {acc.high:.2%}], "
            f"{r.served.images_per_second:,.0f} images/s"
        )
    for c in ev.comparisons:
        print(
            f"{c.model_a} vs {c.model_b}: McNemar p = {c.p_value:.3g}, agreement {c.agreement:.2%}"
        )
    print(f"report: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
