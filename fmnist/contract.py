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
from pathlib import Path
from typing import Final

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
# The key that marks a file as one of this project's models: a server serves the ONNX
# files that carry it (under the name it holds), whatever the file is called.
PROJECT_MARKER_KEY: Final = KEY_MODEL_NAME
JSON_METADATA_KEYS: Final = frozenset({KEY_CLASS_NAMES, KEY_DATASET_MD5, KEY_TRAINING_CONFIG})
ONNX_SUFFIX: Final = ".onnx"

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
