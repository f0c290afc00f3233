"""Request bodies built once from real test images, so locust users only send bytes.

Encoding PNGs or JSON inside the timed loop would make the client, not the service, the
bottleneck on a 2-core machine; every body here is prepared before the test starts.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.dataset import DatasetError, load_test_set
from fmnist.registry import study_models

log = logging.getLogger(__name__)

# The models load tests address: the study's (fmnist.registry), in equal shares by default.
MODELS: tuple[str, ...] = study_models()
DEFAULT_MODEL_MIX = ",".join(f"{m}={1 / len(MODELS):g}" for m in MODELS)


BOUNDARY = "fmnist-loadtest-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
JSON = "application/json"


@dataclass(frozen=True)
class Body:
    """One ready-to-send request body."""

    path: str
    data: bytes
    content_type: str
    images: int = 1  # images it classifies (the expected ``count`` of a batch answer)
    reason: str = ""  # for a bad request: the contract's error code it provokes


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    """A multipart/form-data body (RFC 7578) with :data:`BOUNDARY`."""
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, (filename, content, content_type) in files.items():
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.uint8))
    return buffer.getvalue()


@dataclass(frozen=True)
class PayloadPool:
    """Per model: single-image PNG uploads and batch bodies (JSON and .npy), ready to send."""

    singles: dict[str, list[Body]]
    batches: dict[str, list[Body]]


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) uint8 image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def load_images(data_dir: str | Path | None, limit: int) -> np.ndarray:
    """The first ``limit`` test images; synthetic noise only when no dataset is found.

    Checksums are not verified: the traffic does not depend on the exact files, and CI
    runs the load test on a small synthetic IDX set.
    """
    try:
        return load_test_set(data_dir, verify=False, limit=limit).images
    except DatasetError as exc:
        if data_dir is not None:
            raise
        log.warning("no Fashion-MNIST test set (%s); sending random images instead", exc)
        return np.random.default_rng(0).integers(0, 256, (limit, 28, 28), dtype=np.uint8)


def build_pool(
    images: np.ndarray,
    n_singles: int = 512,
    n_batches: int = 24,
    min_batch: int = 16,
    max_batch: int = 256,
    seed: int = 0,
) -> PayloadPool:
    """``n_singles`` PNGs and ``n_batches`` batches with sizes spread over [min, max]."""
    if len(images) == 0:
        raise ValueError("no images to build load-test payloads from")
    if not 1 <= min_batch <= max_batch:
        raise ValueError(f"batch sizes must satisfy 1 <= min <= max, got {min_batch}, {max_batch}")
    rng = np.random.default_rng(seed)
    pngs = [encode_png(images[i]) for i in range(min(n_singles, len(images)))]
    # Sizes evenly spaced on a log scale, so small and large batches are both common;
    # half the batches go as JSON (/classify_batch), half as .npy (/classify_npy).
    sizes = np.geomspace(min_batch, max_batch, n_batches).round().astype(int).tolist()
    chosen = [images[rng.integers(0, len(images), size)] for size in sizes]
    singles: dict[str, list[Body]] = {}
    batches: dict[str, list[Body]] = {}
    for model in MODELS:
        singles[model] = [
            Body(
                "/classify",
                multipart({"model": model}, {"image": ("x.png", png, "image/png")}),
                MULTIPART,
            )
            for png in pngs
        ]
        batches[model] = []
        for i, batch in enumerate(chosen):
            if i % 2 == 0:
                pixels = json.dumps(batch.tolist(), separators=(",", ":"))
                data = f'{{"model":"{model}","pixels":{pixels}}}'.encode()
                batches[model].append(Body("/classify_batch", data, JSON, len(batch)))
            else:
                files = {"array": ("x.npy", npy_bytes(batch), "application/octet-stream")}
                data = multipart({"model": model}, files)
                batches[model].append(Body("/classify_npy", data, MULTIPART, len(batch)))
    return PayloadPool(singles=singles, batches=batches)


def bad_requests(image: np.ndarray) -> list[Body]:
    """One request per kind of client mistake the contract answers with a 4xx."""
    png = encode_png(image)
    corrupt = {"image": ("corrupt.png", png[: len(png) // 3], "image/png")}
    wrong_shape = json.dumps({"pixels": [[[1, 2, 3]]]}).encode()
    return [
        Body("/classify", multipart({}, corrupt), MULTIPART, reason="corrupt_image"),
        Body("/classify_batch", wrong_shape, JSON, reason="wrong_shape"),
        Body(
            "/classify",
            multipart({"model": "no-such-model"}, {"image": ("x.png", png, "image/png")}),
            MULTIPART,
            reason="unknown_model",
        ),
    ]


def parse_model_mix(text: str) -> dict[str, float]:
    """``"baseline=0.5,deeper=0.5"`` → normalised shares; unknown names are an error."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in MODELS:
            raise ValueError(f"model mix names {name!r}; expected {', '.join(MODELS)}")
        try:
            shares[name] = float(value) if value else 1.0
        except ValueError as exc:
            raise ValueError(f"model mix share {part!r} is not a number") from exc
    total = sum(shares.values())
    if not shares or total <= 0 or min(shares.values()) < 0:
        raise ValueError(f"model mix {text!r} needs non-negative shares that sum above 0")
    return {name: share / total for name, share in shares.items()}
