"""Import the exported ONNX files into the BentoML model store.

    python -m service.import_models --onnx-dir artifacts/onnx
    bentoml models list fmnist-baseline

Imports every ``<name>.onnx`` of a known model found in ``--onnx-dir``: ``baseline`` and
``deeper`` must be there, ``improved`` is imported when present. The service (without
FMNIST_MODEL_DIR) and ``bentoml build`` take the latest version of each ``fmnist-<name>``
in the store (``$BENTOML_HOME``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.settings import MODEL_NAMES, REQUIRED_MODELS


def models_to_import(onnx_dir: Path, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(models to import, missing files that are an error) for ``--models`` or the default."""
    if requested:  # named explicitly: every one must exist
        names = list(dict.fromkeys(requested))
        return names, [n for n in names if not (onnx_dir / f"{n}.onnx").is_file()]
    present = [n for n in MODEL_NAMES if (onnx_dir / f"{n}.onnx").is_file()]
    missing = [n for n in REQUIRED_MODELS if n not in present]
    return [n for n in MODEL_NAMES if n in present or n in missing], missing


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
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=MODEL_NAMES,
        help=f"default: every known model found ({', '.join(REQUIRED_MODELS)} required)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names, missing = models_to_import(args.onnx_dir, args.models)
    if missing:
        print(
            f"error: {args.onnx_dir} lacks "
            + ", ".join(f"{n}.onnx" for n in missing)
            + " (expected the files written by fmnist-export)",
            file=sys.stderr,
        )
        return 2
    from service.models_store import import_onnx  # bentoml import is slow; after --help

    for name in names:
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
