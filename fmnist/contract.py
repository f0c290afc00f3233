"""The ONNX model contract: what every exported file holds and every server expects.

One self-contained ONNX file per model (no external ``.data`` file). Its graph takes raw
pixels and scales them itself, so no client or server can get the preprocessing wrong:

  input  ``pixels``         float32 (N, 1, 28, 28), raw values 0–255, N dynamic
  output ``logits``         float32 (N, 10)
  output ``probabilities``  float32 (N, 10), softmax of the logits

Its ``metadata_props`` carry the keys in :data:`METADATA_KEYS` (JSON values where noted in
:data:`JSON_METADATA_KEYS`). Torch-free: training writes this contract, the service and
evaluation read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

INPUT_NAME: Final = "pixels"
LOGITS_NAME: Final = "logits"
PROBABILITIES_NAME: Final = "probabilities"
OUTPUT_NAMES: Final = (LOGITS_NAME, PROBABILITIES_NAME)
INPUT_DTYPE: Final = np.float32
IMAGE_SIDE: Final = 28
INPUT_SHAPE: Final = ("N", 1, IMAGE_SIDE, IMAGE_SIDE)  # N is dynamic
PIXEL_RANGE: Final = (0.0, 255.0)
# The [-1, 1] scaling the graph applies to raw pixels: x / PIXEL_SCALE - PIXEL_SHIFT.
PIXEL_SCALE: Final = 127.5
PIXEL_SHIFT: Final = 1.0
INPUT_SPEC: Final = "pixels: float32 [N,1,28,28], raw 0-255; scaling to [-1,1] in graph"

# Metadata keys written by training.export and read by the service and evaluation.
KEY_MODEL_NAME: Final = "model_name"
KEY_CLASS_NAMES: Final = "class_names"
KEY_PARAMETERS: Final = "parameters"
KEY_TEST_ACCURACY: Final = "test_accuracy"
KEY_VAL_ACCURACY: Final = "val_accuracy"
KEY_BEST_VAL_ACCURACY: Final = "best_val_accuracy"
KEY_DATASET_MD5: Final = "dataset_md5"
KEY_CODE_REVISION: Final = "code_revision"
KEY_TORCH_VERSION: Final = "torch_version"
KEY_INPUT_SPEC: Final = "input_spec"
KEY_TRAINING_CONFIG: Final = "training_config"
KEY_TEMPERATURE: Final = "temperature"
KEY_WEIGHTS: Final = "weights"
# The model's answers on the test set (ReferenceDistribution, JSON), written at export: the
# reference a drift score compares live traffic with. Older files lack it.
KEY_REFERENCE: Final = "reference_distribution"
# The key that marks a file as one of this project's models: a server serves the ONNX
# files that carry it (under the name it holds), whatever the file is called.
PROJECT_MARKER_KEY: Final = KEY_MODEL_NAME
JSON_METADATA_KEYS: Final = frozenset(
    {KEY_CLASS_NAMES, KEY_DATASET_MD5, KEY_TRAINING_CONFIG, KEY_REFERENCE}
)
ONNX_SUFFIX: Final = ".onnx"

# Upper bounds of the confidence histogram: the service's fmnist_prediction_confidence and
# the reference distribution's cumulative shares use the same ones, so they compare bin by bin.
CONFIDENCE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

# Default locations, relative to the repository root: training writes ARTIFACTS_DIR/runs
# and ARTIFACTS_DIR/onnx (the ONNX files), its figures go to RESULTS_DIR.
ARTIFACTS_DIR: Final = Path("artifacts")
RESULTS_DIR: Final = Path("docs/results")


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """Raw 0–255 pixels → [-1, 1] float32, exactly as the exported graph does it."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(PIXEL_SCALE) - np.float32(PIXEL_SHIFT)


def as_input(images: np.ndarray) -> np.ndarray:
    """uint8 or float images (N, 28, 28) or (N, 1, 28, 28) → the graph's input tensor."""
    return np.ascontiguousarray(images, dtype=INPUT_DTYPE).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


def onnx_filename(model: str) -> str:
    """``<model>.onnx``: the file name fmnist-export writes for a model."""
    return f"{model}{ONNX_SUFFIX}"


def onnx_dir(artifacts: Path | str = ARTIFACTS_DIR) -> Path:
    """``<artifacts>/onnx``: the folder fmnist-export writes its ONNX files to."""
    return Path(artifacts) / "onnx"


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file, read in 1 MiB chunks: a model's identity everywhere."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ReferenceDistribution:
    """A model's answers on a reference set (the test set at export), as shares.

    ``class_share[name]``: share of images predicted as that class (sums to 1);
    ``confidence_share[i]``: share of answers whose confidence (probability of the
    predicted class) is <= ``confidence_le[i]``, cumulative like a Prometheus histogram.
    """

    images: int
    class_share: Mapping[str, float]
    confidence_le: tuple[float, ...]
    confidence_share: tuple[float, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "images": self.images,
                "class_share": dict(self.class_share),
                "confidence_le": list(self.confidence_le),
                "confidence_share": list(self.confidence_share),
            }
        )

    @classmethod
    def from_json(
        cls, value: str | Mapping[str, Any], class_names: Sequence[str]
    ) -> ReferenceDistribution:
        """Parse the metadata value (JSON text or already decoded); ValueError if malformed."""
        try:
            doc = json.loads(value) if isinstance(value, str) else dict(value)
            images = int(doc["images"])
            share = {str(k): float(v) for k, v in doc["class_share"].items()}
            le = tuple(float(b) for b in doc["confidence_le"])
            cumulative = tuple(float(c) for c in doc["confidence_share"])
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(
                f"{KEY_REFERENCE} is malformed ({type(exc).__name__}: {exc})"
            ) from None
        if list(share) != list(class_names):
            raise ValueError(
                f"{KEY_REFERENCE} has classes {list(share)}; expected {list(class_names)}"
            )
        shares_ok = all(0.0 <= v <= 1.0 for v in (*share.values(), *cumulative))
        if images < 1 or not shares_ok or abs(sum(share.values()) - 1.0) > 1e-6:
            raise ValueError(f"{KEY_REFERENCE} holds shares that are not a distribution")
        if len(le) != len(cumulative) or list(cumulative) != sorted(cumulative):
            raise ValueError(f"{KEY_REFERENCE} holds a confidence histogram that is not cumulative")
        return cls(images, share, le, cumulative)


def reference_distribution(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    confidence_le: Sequence[float] = CONFIDENCE_BUCKETS,
) -> ReferenceDistribution:
    """The class mix and confidence histogram of (N, C) probabilities, as shares."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names) or len(probs) == 0:
        raise ValueError(f"expected (N, {len(class_names)}) probabilities, got {probs.shape}")
    counts = np.bincount(probs.argmax(axis=1), minlength=len(class_names))
    confidence = probs.max(axis=1)
    return ReferenceDistribution(
        images=len(probs),
        class_share={n: float(c) / len(probs) for n, c in zip(class_names, counts, strict=True)},
        confidence_le=tuple(float(b) for b in confidence_le),
        # <= like a Prometheus histogram bucket (and on float64, as the service observes it).
        confidence_share=tuple(float(np.mean(confidence <= b)) for b in confidence_le),
    )
