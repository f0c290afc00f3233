"""Import the exported ONNX files into the BentoML model store.

    python -m service.import_models --onnx-dir artifacts/onnx
    bentoml models list

Imports every exported model in ``--onnx-dir`` (each ``*.onnx`` that carries the project's
metadata, as ``fmnist-<name>`` under the name it records), or only ``--models``. Every
file is checked with onnxruntime first and nothing is imported unless all of them pass:
a bad file ends the command with exit code 2 and one line. Each import is a new version of
``fmnist-<name>``; the service (without FMNIST_MODEL_DIR) and ``bentoml build`` take the
versions the aliases name (service/versions.py), and the latest of a name whose
``production`` is not named, from the store in ``$BENTOML_HOME``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Import exported ONNX models into the BentoML model store.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--onnx-dir",
        type=Path,
        default=Path("artifacts/onnx"),
        help="folder holding the exported <model>.onnx files (fmnist-export writes them)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="import only these models, each of which must be there (default: every one found)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # bentoml and onnxruntime imports are slow: after --help.
    from service.catalog import CatalogError, models_in_dir
    from service.inference import ModelFileError, OnnxModel

    try:
        sources = models_in_dir(args.onnx_dir, tuple(args.models) if args.models else None)
        checked = [OnnxModel(s.name, s.path) for s in sources if s.path is not None]
    except (CatalogError, ModelFileError) as exc:
        message = str(exc).replace("FMNIST_MODELS lists", "--models lists")
        message = message.replace(
            f"FMNIST_MODEL_DIR={args.onnx_dir}", f"--onnx-dir {args.onnx_dir}"
        )
        print(f"error: {message}", file=sys.stderr)
        return 2
    from service.models_store import import_onnx

    for model in checked:
        stored = import_onnx(model)
        print(f"{model.name}: {model.path} -> {stored.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
