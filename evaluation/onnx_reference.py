"""The reference for the serving-skew check: a served ONNX file run in-process with
onnxruntime, fed exactly as the contract (fmnist.contract) says the service feeds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from fmnist.contract import INPUT_NAME, PROBABILITIES_NAME, as_input
from fmnist.dataset import NUM_CLASSES


class OnnxReferenceError(RuntimeError):
    """The local ONNX file cannot be loaded or run."""


def onnx_probabilities(path: Path, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """(N, 10) probabilities for uint8 images (N, 28, 28), as the service computes them."""
    out = []
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for start in range(0, len(images), batch_size):
            pixels = as_input(images[start : start + batch_size])  # (B, 1, 28, 28) float32
            out.append(sess.run([PROBABILITIES_NAME], {INPUT_NAME: pixels})[0])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise OnnxReferenceError(f"{path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return np.concatenate(out) if out else np.empty((0, NUM_CLASSES), np.float32)
