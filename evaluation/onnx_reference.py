"""The served ONNX files run in-process with onnxruntime, for the serving-skew check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

INPUT_NAME = "pixels"  # docs/api.md: float32 (N, 1, 28, 28), raw 0-255
PROBABILITIES = "probabilities"


class LocalModelError(RuntimeError):
    """The local ONNX file cannot be loaded or run."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def onnx_probabilities(path: Path, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) probabilities for uint8 images (N, 28, 28), as the service computes them."""
    out = []
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for start in range(0, len(images), batch_size):
            pixels = images[start : start + batch_size].astype(np.float32)[:, None]  # (B,1,28,28)
            out.append(sess.run([PROBABILITIES], {INPUT_NAME: pixels})[0])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise LocalModelError(f"{path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return np.concatenate(out) if out else np.empty((0, 10), np.float32)
