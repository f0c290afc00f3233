"""Import the exported ONNX files into the BentoML model store.

    python -m service.import_models --onnx-dir artifacts/onnx
    bentoml models list fmnist-baseline

The service (without FMNIST_MODEL_DIR) and ``bentoml build`` take the latest version of
``fmnist-baseline`` and ``fmnist-deeper`` from the store (``$BENTOML_HOME``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.settings import MODEL_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Import exported ONNX models into the BentoML model store.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--onnx-dir",
        type=Path,
        default=Path("artifacts/onnx"),
        help="folder holding <model>.onnx files (fmnist-export writes them)",
    )
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from service.models_store import import_onnx  # bentoml import is slow; after --help

    for name in args.models:
        path = args.onnx_dir / f"{name}.onnx"
        try:
            stored = import_onnx(name, path)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: {path} -> {stored.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
