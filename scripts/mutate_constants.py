"""Plant one plausible bug at a time in the module-level facts, check that a test fails.

    .venv/bin/python scripts/mutate_constants.py     # part of `make mutation`

mutmut mutates code inside functions only, so the facts defined at module level (class
names and their order, checksums, the ONNX contract, limits, defaults, the study's
numbers) get these hand-written mutants instead. Each one is applied to a copy of the
tree in a temporary folder and the tests of [tool.mutmut] are run against it. Exits 1
when a mutant survives (or when the unmodified copy fails).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("fmnist", "service", "tests", "pyproject.toml")

# (file, text, replacement): each a bug someone could plausibly commit.
MUTANTS = [
    ("fmnist/dataset.py", '"Pullover",\n    "Dress",', '"Dress",\n    "Pullover",'),
    ("fmnist/dataset.py", '"Sneaker",', '"Sneakers",'),
    ("fmnist/dataset.py", "9018921c3c673c538a1fc5bad174d6f9", "9018921c3c673c538a1fc5bad174d6f8"),
    ("fmnist/dataset.py", 'ENV_VAR = "FMNIST_DATA_DIR"', 'ENV_VAR = "FMNIST_DATA"'),
    ("fmnist/metrics.py", "ECE_BINS = 15", "ECE_BINS = 10"),
    ("fmnist/metrics.py", "bins: int = ECE_BINS", "bins: int = 10"),
    ("fmnist/contract.py", 'INPUT_NAME: Final = "pixels"', 'INPUT_NAME: Final = "input"'),
    ("fmnist/contract.py", "PIXEL_SCALE: Final = 127.5", "PIXEL_SCALE: Final = 255.0"),
    (
        "fmnist/contract.py",
        'KEY_DATASET_MD5: Final = "dataset_md5"',
        'KEY_DATASET_MD5: Final = "md5"',
    ),
    ("fmnist/registry.py", 'ModelSpec("deeper", True,', 'ModelSpec("deeper", False,'),
    ("fmnist/study.py", '"test_acc": 0.9223,', '"test_acc": 0.9231,'),
    ("service/validation.py", "MAX_IMAGE_PIXELS = 50_000_000", "MAX_IMAGE_PIXELS = 500_000_000"),
    (
        "service/validation.py",
        '"PNG", "JPEG", "WEBP", "BMP"}',
        '"PNG", "JPEG", "WEBP", "BMP", "GIF"}',
    ),
    ("service/validation.py", "if invert:", "if False:"),
]


def pytest_args() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    selection: list[str] = config["pytest_add_cli_args_test_selection"]
    extra: list[str] = config.get("pytest_add_cli_args", [])
    return [sys.executable, "-m", "pytest", "-q", "-x", *extra, *selection]


def tests_pass(tree: Path) -> bool:
    done = subprocess.run(pytest_args(), cwd=tree, capture_output=True, timeout=600)
    return done.returncode == 0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mutate-constants-") as tmp:
        tree = Path(tmp)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, tree / name)
        if not tests_pass(tree):
            print("error: the tests fail on the unmodified copy; fix them first")
            return 1
        survivors = 0
        for file, text, replacement in MUTANTS:
            path = tree / file
            original = path.read_text()
            if text not in original:
                print(f"error: {file} no longer holds {text!r}; update MUTANTS")
                return 1
            path.write_text(original.replace(text, replacement, 1))
            try:
                killed = not tests_pass(tree)
            finally:
                path.write_text(original)
            survivors += not killed
            status = "killed  " if killed else "SURVIVED"
            print(f"{status} {file}: {text!r} -> {replacement!r}")
        print(f"module-level mutants: {len(MUTANTS) - survivors} of {len(MUTANTS)} killed")
        return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
