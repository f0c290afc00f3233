"""The BentoML model store side: import exported ONNX files, find them again.

Each CNN becomes one BentoML model, ``fmnist-<name>``, holding ``model.onnx`` and, as
BentoML metadata, the ONNX file's own metadata plus its sha256 and opset, so that
``bentoml models get fmnist-baseline`` shows what was trained and how well it did.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import bentoml

from service.inference import OnnxModel
from service.onnx_file import file_sha256, read_opset
from service.settings import MODEL_NAMES, REQUIRED_MODELS

log = logging.getLogger(__name__)

STORE_PREFIX = "fmnist-"
ONNX_FILENAME = "model.onnx"


def store_name(model: str) -> str:
    return f"{STORE_PREFIX}{model}"


def in_store(model: str) -> bool:
    """Whether the BentoML model store (a Bento's own, when serving one) has the model."""
    try:
        bentoml.models.get(f"{store_name(model)}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True


def models_in_store() -> tuple[str, ...]:
    """The models to reference from the store: the required ones always (``bentoml serve``
    and ``bentoml build`` then report a missing one), the optional ones when imported."""
    return tuple(n for n in MODEL_NAMES if n in REQUIRED_MODELS or in_store(n))


def _store_safe(value: Any) -> Any:
    """BentoML metadata takes no None: JSON ``null`` values inside the ONNX metadata (for
    example ``training_config.patience``) are kept as the string ``"null"``."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return {k: _store_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_store_safe(v) for v in value]
    return value


def import_onnx(name: str, path: Path) -> bentoml.Model:
    """Copy one ONNX file into the BentoML model store as ``fmnist-<name>``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an ONNX file from fmnist-export)")
    probe = OnnxModel(name, path)  # validates inputs, outputs and class names
    card = probe.card
    metadata: dict[str, Any] = {
        "sha256": card.sha256,
        "opset": card.opset,
        "parameters": card.parameters,
        "test_accuracy": card.test_accuracy,
        "val_accuracy": card.val_accuracy,
        "input": card.input,
        "onnx_metadata": _store_safe(card.metadata),
    }
    labels = {"project": "fmnist", "model": name, "format": "onnx"}
    with bentoml.models.create(
        store_name(name), module="onnxruntime", labels=labels, metadata=metadata
    ) as stored:
        shutil.copyfile(path, Path(stored.path) / ONNX_FILENAME)
    log.info("imported %s as %s (sha256 %s)", path, stored.tag, card.sha256[:12])
    return stored


def onnx_path_of(stored: Any) -> tuple[Path, str | None, int | None]:
    """The ONNX file of a resolved store model, with the sha256 and opset recorded at import."""
    path = Path(stored.path) / ONNX_FILENAME
    meta = stored.info.metadata
    return path, meta.get("sha256") or file_sha256(path), meta.get("opset") or read_opset(path)
