"""onnxruntime sessions for the exported CNNs, and where their files come from.

Torch-free. Each model is one self-contained ONNX file whose graph takes raw pixels
(float32 [N, 1, 28, 28], 0-255) and returns ``logits`` and ``probabilities`` [N, 10]
(training/export.py). Sessions are created once per worker with explicit thread counts
so that ``workers x threads`` does not oversubscribe the CPU.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from fmnist.contract import IMAGE_SIDE, INPUT_NAME, KEY_CLASS_NAMES, PROBABILITIES_NAME, as_input
from fmnist.contract import file_sha256 as file_sha256
from fmnist.dataset import CLASS_NAMES
from service.onnx_file import read_opset

log = logging.getLogger(__name__)

OUTPUT_NAME = PROBABILITIES_NAME


class ProviderError(RuntimeError):
    """The execution provider asked for is not available in this onnxruntime."""


class ModelOutputError(RuntimeError):
    """The model answered probabilities that are not finite numbers (a broken model)."""


class ModelFileError(ValueError):
    """An ONNX file that onnxruntime cannot load, or that breaks the model contract."""


def choose_providers(preference: str) -> list[str]:
    """CUDA when asked for or (``auto``) when this onnxruntime build has it, else CPU."""
    available = ort.get_available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preference == "cuda":
        raise ProviderError(
            f"FMNIST_ORT_PROVIDER=cuda but this onnxruntime offers only {', '.join(available)} "
            "(install onnxruntime-gpu, or set FMNIST_ORT_PROVIDER=auto or cpu)"
        )
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class ModelCard:
    """What ``GET /models`` says about one model."""

    name: str
    sha256: str
    opset: int | None
    parameters: int | None
    test_accuracy: float | None
    val_accuracy: float | None
    input: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameters": self.parameters,
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "sha256": self.sha256,
            "opset": self.opset,
            "input": self.input,
            "metadata": self.metadata,
        }


def _number(meta: dict[str, str], key: str, kind: type) -> Any:
    """The metadata value as ``kind``; None when absent, unreadable, or an integer beyond
    64 bits (which no JSON answer of the service can carry)."""
    try:
        value = kind(meta[key]) if key in meta else None
    except ValueError:
        return None
    return None if kind is int and value is not None and abs(value) >= 2**63 else value


def _decoded(meta: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            # orjson reads integers beyond 64 bits as floats, so every answer can carry them
            out[key] = orjson.loads(value) if value[:1] in "[{" else value
        except orjson.JSONDecodeError:
            out[key] = value
    return out


class OnnxModel:
    """One exported CNN: ``predict`` maps float32 (N, 28, 28) pixels to (N, 10) probabilities."""

    def __init__(
        self,
        name: str,
        path: Path,
        intra_threads: int = 1,
        inter_threads: int = 1,
        providers: list[str] | None = None,
        sha256: str | None = None,
        opset: int | None = None,
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = inter_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.name = name
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(
                f"{path} cannot be loaded by onnxruntime ({reason[:200]}); expected an ONNX "
                "file written by fmnist-export"
            ) from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelFileError(
                f"{path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected "
                f"input {INPUT_NAME!r} and output {OUTPUT_NAME!r} (export with fmnist-export)"
            )
        shape = list(inputs[INPUT_NAME].shape)
        if len(shape) != 4 or shape[1:] != [1, IMAGE_SIDE, IMAGE_SIDE]:
            raise ModelFileError(
                f"{path} takes {INPUT_NAME!r} of shape {shape}; expected [N, 1, 28, 28]"
            )
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            names = json.loads(meta.get(KEY_CLASS_NAMES, "null")) or list(CLASS_NAMES)
        except json.JSONDecodeError:
            names = meta.get(KEY_CLASS_NAMES)
        if names != list(CLASS_NAMES):
            raise ModelFileError(f"{path} has class names {names}; expected {list(CLASS_NAMES)}")
        spec = inputs[INPUT_NAME]
        self.card = ModelCard(
            name=name,
            sha256=sha256 or file_sha256(path),
            opset=opset if opset is not None else read_opset(path),
            parameters=_number(meta, "parameters", int),
            test_accuracy=_number(meta, "test_accuracy", float),
            val_accuracy=_number(meta, "val_accuracy", float),
            input={
                "name": spec.name,
                "dtype": "float32",
                "shape": [d if isinstance(d, int) else "N" for d in spec.shape],
                "range": [0, 255],
                "description": meta.get("input_spec", "raw pixels 0-255"),
            },
            metadata=_decoded(meta),
        )
        self.providers = self.session.get_providers()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 28, 28) raw pixels (any real dtype) → float32 (N, 10) class probabilities.

        Raises :class:`ModelOutputError` when the model answers NaN or infinity, so that no
        client is sent a number JSON cannot carry (the request gets a 500, logged)."""
        probabilities: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: as_input(pixels)})[
            0
        ]
        if not np.isfinite(probabilities).all():
            raise ModelOutputError(
                f"model {self.name} ({self.path}) answered non-finite probabilities for "
                f"{int((~np.isfinite(probabilities)).any(axis=1).sum())} of "
                f"{len(probabilities)} images"
            )
        return probabilities

    def warm_up(self, sizes: tuple[int, ...] = (1, 8, 64)) -> float:
        """Run a few batches so the first real request does not pay for allocation."""
        start = time.perf_counter()
        for n in sizes:
            self.predict(np.zeros((n, 28, 28), dtype=np.float32))
        return time.perf_counter() - start
