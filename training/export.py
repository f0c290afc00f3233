"""Export trained models to self-contained ONNX files and check them against PyTorch.

    fmnist-export                      # every finished run in artifacts/runs → artifacts/onnx

The exported graph is the model contract, written down in ``fmnist.contract``: raw pixels
``pixels`` float32 (N, 1, 28, 28) in, ``logits`` and ``probabilities`` (N, 10) out, the
[-1, 1] scaling inside the graph so no client can get preprocessing wrong. Metadata
(``metadata_props``, the contract's ``KEY_*`` names) holds the class names, model name,
parameter count, accuracies, dataset checksums, code revision and torch version.

The model's answers on the test set (predicted-class shares, confidence histogram) are
recorded under ``contract.KEY_REFERENCE``: the reference the service exposes as
``fmnist_reference_*`` gauges for the drift score (deploy/monitoring, docs/operations.md).

Parity with PyTorch on the full test set (max |Δlogit| ≤ 1e-4, identical argmax) is part of
the export: a file that fails it is deleted and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from fmnist import contract
from fmnist.contract import (
    ARTIFACTS_DIR,
    IMAGE_SIDE,
    INPUT_NAME,
    LOGITS_NAME,
    OUTPUT_NAMES,
    PIXEL_SCALE,
    PIXEL_SHIFT,
    PROBABILITIES_NAME,
    ReferenceDistribution,
    file_sha256,
    onnx_dir,
    onnx_filename,
    reference_distribution,
)
from fmnist.dataset import CLASS_NAMES, DatasetError, load_test_set
from fmnist.registry import model_names
from training.data import add_dataset_arguments
from training.models import count_parameters, run_model
from training.recipe import registry_failure

log = logging.getLogger(__name__)

OPSET = 18
PARITY_TOLERANCE = 1e-4  # max |Δlogit| between onnxruntime and PyTorch, float32


class ExportError(RuntimeError):
    """The exported file is invalid or disagrees with PyTorch."""


class RawPixelModel(nn.Module):
    """Wraps a trained CNN so that it takes raw 0–255 pixels and returns logits and probs."""

    def __init__(self, net: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        # Temperature scaling (fitted on validation) is folded into the graph; T = 1 for
        # the study's models. It changes confidences, never the argmax.
        self.inv_temperature = 1.0 / temperature

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(pixels / PIXEL_SCALE - PIXEL_SHIFT)  # (N, 10)
        if self.inv_temperature != 1.0:
            logits = logits * self.inv_temperature
        return logits, torch.softmax(logits, dim=1)


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_logit_diff: float
    argmax_mismatches: int

    @property
    def ok(self) -> bool:
        return self.max_abs_logit_diff <= PARITY_TOLERANCE and self.argmax_mismatches == 0


def code_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout
        return rev + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_onnx(
    net: nn.Module,
    path: Path,
    metadata: dict[str, Any],
    opset: int = OPSET,
    temperature: float = 1.0,
) -> Path:
    """Write ``net`` (expects [-1, 1] input) as one self-contained raw-pixel ONNX file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = RawPixelModel(net, temperature).eval().cpu()
    example = torch.full((2, 1, IMAGE_SIDE, IMAGE_SIDE), 127.0)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with tempfile.TemporaryDirectory() as tmp:
        # The dynamo exporter may put weights in a side ``.data`` file; export to a scratch
        # folder, then fold everything into one proto.
        scratch = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapped,
            (example,),
            str(scratch),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch},),  # RawPixelModel.forward's one argument
            verbose=False,
        )
        proto = onnx.load(str(scratch), load_external_data=True)
    model_name = metadata.get(contract.KEY_MODEL_NAME, "CNN")
    proto.doc_string = f"Fashion-MNIST {model_name}: raw pixels 0-255 in"
    entries = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    return _save_with_metadata(proto, path, entries)


def _save_with_metadata(proto: onnx.ModelProto, path: Path, entries: dict[str, str]) -> Path:
    """``proto`` with exactly these ``metadata_props``, checked, written atomically to path."""
    del proto.metadata_props[:]
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    tmp_path = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp_path), save_as_external_data=False)
    os.replace(tmp_path, path)
    return path


def onnx_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def add_metadata(path: Path, entries: dict[str, str]) -> Path:
    """Add (or replace) ``metadata_props`` entries of an ONNX file, in place, atomically."""
    proto = onnx.load(str(path))
    kept = {p.key: p.value for p in proto.metadata_props if p.key not in entries}
    return _save_with_metadata(proto, path, {**kept, **entries})


def reference_on(path: Path, images: np.ndarray, batch: int = 1000) -> ReferenceDistribution:
    """The exported model's answers (onnxruntime, as served) on uint8 images (N, 28, 28)."""
    sess = onnx_session(path)
    probabilities = np.concatenate(
        [
            sess.run(
                [PROBABILITIES_NAME], {INPUT_NAME: images[i : i + batch, None].astype(np.float32)}
            )[0]
            for i in range(0, len(images), batch)
        ]
    )
    return reference_distribution(probabilities, CLASS_NAMES)


@torch.no_grad()
def check_parity(
    path: Path, net: nn.Module, images: np.ndarray, batch: int = 1000, temperature: float = 1.0
) -> ParityReport:
    """Compare onnxruntime's logits with PyTorch's on uint8 images (N, 28, 28)."""
    sess = onnx_session(path)
    wrapped = RawPixelModel(net, temperature).eval().cpu()
    worst, mismatches = 0.0, 0
    for i in range(0, len(images), batch):
        pixels = images[i : i + batch].astype(np.float32)[:, None]  # (B, 1, 28, 28)
        ort_logits = sess.run([LOGITS_NAME], {INPUT_NAME: pixels})[0]
        pt_logits = wrapped(torch.from_numpy(pixels))[0].numpy()
        worst = max(worst, float(np.abs(ort_logits - pt_logits).max()))
        mismatches += int((ort_logits.argmax(1) != pt_logits.argmax(1)).sum())
    return ParityReport(len(images), worst, mismatches)


def export_run(run_folder: Path, onnx_path: Path, images: np.ndarray) -> dict[str, Any]:
    """Export a finished run's chosen weights and check parity; returns a record."""
    summary = json.loads((run_folder / "summary.json").read_text())
    name = summary["model"]
    weights = summary.get("exported_weights", "final")  # final.pt or best.pt
    temperature = float(summary.get("temperature", 1.0))
    net = run_model(summary)
    net.load_state_dict(
        torch.load(run_folder / f"{weights}.pt", map_location="cpu", weights_only=True)
    )
    net = net.eval()
    val_acc = summary.get("exported_val_acc", summary["final_val_acc"])
    metadata = {
        contract.KEY_MODEL_NAME: name,
        contract.KEY_CLASS_NAMES: list(CLASS_NAMES),
        contract.KEY_PARAMETERS: str(count_parameters(net)),
        contract.KEY_TEST_ACCURACY: f"{summary['test_acc']:.6f}",
        contract.KEY_VAL_ACCURACY: f"{val_acc:.6f}",
        contract.KEY_BEST_VAL_ACCURACY: f"{summary['best_val_acc']:.6f}",
        contract.KEY_WEIGHTS: weights,
        contract.KEY_TEMPERATURE: f"{temperature:.6f}",
        contract.KEY_DATASET_MD5: summary["dataset_md5"],
        contract.KEY_CODE_REVISION: code_revision(),
        contract.KEY_TORCH_VERSION: torch.__version__,
        contract.KEY_INPUT_SPEC: contract.INPUT_SPEC,
        contract.KEY_TRAINING_CONFIG: summary["config"],
    }
    export_onnx(net, onnx_path, metadata, temperature=temperature)
    parity = check_parity(onnx_path, net, images, temperature=temperature)
    if not parity.ok:
        onnx_path.unlink(missing_ok=True)
        raise ExportError(
            f"{name}: ONNX disagrees with PyTorch on {parity.images} images "
            f"(max |Δlogit| {parity.max_abs_logit_diff:.2e}, tolerance {PARITY_TOLERANCE:g}; "
            f"{parity.argmax_mismatches} argmax mismatches); file removed"
        )
    reference = reference_on(onnx_path, images)
    add_metadata(onnx_path, {contract.KEY_REFERENCE: reference.to_json()})
    return {
        "model": name,
        "path": str(onnx_path),
        "sha256": file_sha256(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "opset": OPSET,
        "parity_images": parity.images,
        "max_abs_logit_diff": parity.max_abs_logit_diff,
        "argmax_mismatches": parity.argmax_mismatches,
        "reference_images": reference.images,
    }


def main(argv: list[str] | None = None) -> int:
    if (failed := registry_failure()) is not None:
        return failed
    p = argparse.ArgumentParser(
        description="Export trained runs to ONNX with a parity check.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=model_names(),
        help="default: every registered model with a finished run under OUT/runs",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ARTIFACTS_DIR,
        help="artifacts folder: reads OUT/runs/MODEL, writes OUT/onnx/MODEL.onnx",
    )
    add_dataset_arguments(p)
    p.add_argument("--limit", type=int, default=None, help="parity on the first N test images")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # the exporter's pass chatter
    try:
        test = load_test_set(args.data_dir, verify=not args.skip_checksums, limit=args.limit)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    models = args.models or [
        m for m in model_names() if (args.out / "runs" / m / "summary.json").exists()
    ]
    if not models:
        print(
            f"error: no finished training run under {args.out / 'runs'}; run fmnist-train first",
            file=sys.stderr,
        )
        return 2
    folder = onnx_dir(args.out)
    records = []
    for name in models:
        run = args.out / "runs" / name
        if not (run / "summary.json").exists():
            print(
                f"error: no finished training run in {run}; run fmnist-train first", file=sys.stderr
            )
            return 2
        try:
            rec = export_run(run, folder / onnx_filename(name), test.images)
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        records.append(rec)
        print(
            f"{name}: {rec['path']} ({rec['bytes'] / 1e6:.1f} MB, sha256 {rec['sha256'][:12]}), "
            f"parity on {rec['parity_images']} images: max |Δlogit| "
            f"{rec['max_abs_logit_diff']:.1e}, {rec['argmax_mismatches']} argmax mismatches"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.json").write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
