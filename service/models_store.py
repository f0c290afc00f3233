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

from fmnist.contract import file_sha256
from service.catalog import STORE_FILENAME, store_name
from service.inference import OnnxModel
from service.onnx_file import read_opset

log = logging.getLogger(__name__)


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


def import_onnx(model: OnnxModel) -> bentoml.Model:
    """Copy one checked ONNX model into the BentoML model store as ``fmnist-<name>``."""
    name, path, card = model.name, model.path, model.card
    metadata: dict[str, Any] = {
        "sha256": card.sha256,
        "opset": card.opset,
        "parameters": card.parameters,
        "test_accuracy": card.test_accuracy,
        "val_accuracy": card.val_accuracy,
        "input": card.input,
        "onnx_metadata": _store_safe(card.metadata),
    }
    # A fact the file does not record (e.g. no "parameters" metadata) is left out: BentoML
    # metadata takes no None.
    metadata = {key: value for key, value in metadata.items() if value is not None}
    labels = {"project": "fmnist", "model": name, "format": "onnx"}
    with bentoml.models.create(
        store_name(name), module="onnxruntime", labels=labels, metadata=metadata
    ) as stored:
        shutil.copyfile(path, Path(stored.path) / STORE_FILENAME)
    log.info("imported %s as %s (sha256 %s)", path, stored.tag, card.sha256[:12])
    return stored


def onnx_path_of(stored: Any) -> tuple[Path, str | None, int | None]:
    """The ONNX file of a resolved store model, with the sha256 and opset recorded at import."""
    path = Path(stored.path) / STORE_FILENAME
    meta = stored.info.metadata
    return path, meta.get("sha256") or file_sha256(path), meta.get("opset") or read_opset(path)
