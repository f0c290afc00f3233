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
COPIED = ("fmnist", "service", "evaluation", "training", "tests", "pyproject.toml")

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
    # service/settings.py: defaults and bounds (class body), the validators (decorated).
    ("service/settings.py", 'PREFIX = "FMNIST_"', 'PREFIX = "FMNIST"'),
    ("service/settings.py", "Field(2, ge=1, le=64)", "Field(1, ge=1, le=64)"),
    ("service/settings.py", "Field(2, ge=1, le=64)", "Field(2, ge=1, le=128)"),
    ("service/settings.py", "Field(1, ge=0, le=256)", "Field(1, ge=1, le=256)"),
    ("service/settings.py", "Field(64, ge=1, le=4096)", "Field(32, ge=1, le=4096)"),
    ("service/settings.py", "Field(0.0, ge=0, le=1000)", "Field(2.0, ge=0, le=1000)"),
    ("service/settings.py", "Field(256, ge=1,", "Field(512, ge=1,"),
    ("service/settings.py", "10 * 1024 * 1024, ge=1024", "10 * 1024 * 1024, ge=1"),
    ("service/settings.py", "Field(100, ge=0,", "Field(0, ge=0,"),
    ("service/settings.py", "reuse_port: bool = True", "reuse_port: bool = False"),
    ("service/settings.py", "frozen=True", "frozen=False"),
    (
        "service/settings.py",
        'RETIRED = {\n    "BATCHING_MAX_LATENCY_MS"',
        'RETIRED = {\n    "MAX_LATENCY_MS"',
    ),
    (
        "service/settings.py",
        "_empty_dir_is_unset(cls, value: Any) -> Any:\n        return None if isinstance(value, "
        "str) and not value.strip()",
        "_empty_dir_is_unset(cls, value: Any) -> Any:\n        return None if isinstance(value, "
        "str) and not value",
    ),
    (
        "service/settings.py",
        "_blank_is_unset(cls, value: Any) -> Any:\n        return None if isinstance(value, str) "
        "and not value.strip()",
        "_blank_is_unset(cls, value: Any) -> Any:\n        return None if isinstance(value, str) "
        "and not value",
    ),
    ("service/settings.py", "tuple(dict.fromkeys(", "tuple(list("),
    ("service/settings.py", "return names or None", "return names"),
    ("service/settings.py", '.strip().lower() or "auto"', '.strip() or "auto"'),
    ("service/settings.py", '("auto", "cpu", "cuda"):', '("auto", "cpu", "cuda", "gpu"):'),
    (
        "service/settings.py",
        "if self.models and self.default_model and self.default_model not in",
        "if self.models and self.default_model not in",
    ),
    (
        "service/settings.py",
        "self.batching_max_wait_ms / 1000.0",
        "self.batching_max_wait_ms / 100.0",
    ),
    # service/metrics.py: the name prefix, the buckets, one instance per process.
    ("service/metrics.py", 'PREFIX = "fmnist"', 'PREFIX = "fmnist_service"'),
    (
        "service/metrics.py",
        "INFERENCE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, "
        "0.2, 0.5, 1.0)",
        "INFERENCE_BUCKETS = (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)",
    ),
    ("service/metrics.py", "256, 512, 1024)", "256, 512)"),
    ("fmnist/contract.py", "0.9, 0.95, 0.99, 1.0)", "0.9, 1.0)"),  # CONFIDENCE_BUCKETS
    ("service/metrics.py", "@functools.cache\n", ""),
    # evaluation/metrics.py: the report's fixed choices, the properties.
    ("evaluation/metrics.py", "ALPHA = 0.05", "ALPHA = 0.01"),
    ("evaluation/metrics.py", "BOOTSTRAP_RESAMPLES = 10_000", "BOOTSTRAP_RESAMPLES = 1_000"),
    ("evaluation/metrics.py", "SKEW_TOLERANCE = 1e-4", "SKEW_TOLERANCE = 1e-3"),
    ("evaluation/metrics.py", "level: float = 0.95\n\n", "level: float = 0.9\n\n"),
    ("evaluation/metrics.py", "bins=ECE_BINS", "bins=10"),
    ("evaluation/metrics.py", "return self.only_a + self.only_b", "return self.only_a"),
    (
        "evaluation/metrics.py",
        "return None if self.served_sha256 is None",
        "return False if self.served_sha256 is None",
    ),
    (
        "evaluation/metrics.py",
        "self.max_abs_prob_diff <= SKEW_TOLERANCE",
        "self.max_abs_prob_diff < SKEW_TOLERANCE",
    ),
    (
        "evaluation/metrics.py",
        "self.argmax_mismatches == 0 and self.max_abs_prob_diff",
        "self.argmax_mismatches == 0 or self.max_abs_prob_diff",
    ),
    # training/export.py: opset, tolerance, the parity check (decorated: mutmut skips it).
    ("training/export.py", "OPSET = 18", "OPSET = 17"),
    ("training/export.py", "PARITY_TOLERANCE = 1e-4", "PARITY_TOLERANCE = 1e3"),
    ("training/export.py", "and self.argmax_mismatches == 0", "and self.argmax_mismatches <= 1"),
    ("training/export.py", "@torch.no_grad()\ndef check_parity", "def check_parity"),
    ("training/export.py", "worst = max(worst,", "worst = min(worst,"),
    ("training/export.py", "mismatches += int(", "mismatches = int("),
    ("training/export.py", "range(0, len(images), batch)", "range(0, len(images) - batch, batch)"),
    ("training/export.py", "return ParityReport(len(images),", "return ParityReport(batch,"),
    (
        "training/export.py",
        "RawPixelModel(net, temperature).eval().cpu()\n    worst",
        "RawPixelModel(net).eval().cpu()\n    worst",
    ),
    ("training/export.py", "sess.run([LOGITS_NAME]", "sess.run([contract.PROBABILITIES_NAME]"),
]

# The tests that pin each module's facts (the rest of [tool.mutmut]'s selection would only
# cost time); a module not named here is run against the whole selection.
PINNED_BY = {
    "service/settings.py": ["tests/test_service_settings.py", "tests/test_service_validation.py"],
    "service/metrics.py": ["tests/test_service_metrics.py"],
    "evaluation/metrics.py": ["tests/test_evaluation_metrics.py"],
    "training/export.py": ["tests/test_export.py"],
}


def pytest_args(file: str | None = None) -> list[str]:
    """pytest on [tool.mutmut]'s selection, or on the tests that pin ``file``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    selection: list[str] = config["pytest_add_cli_args_test_selection"]
    extra: list[str] = config.get("pytest_add_cli_args", [])
    tests = PINNED_BY.get(file, selection) if file else selection
    return [sys.executable, "-m", "pytest", "-q", "-x", *extra, *tests]


def tests_pass(tree: Path, file: str | None = None) -> bool:
    done = subprocess.run(pytest_args(file), cwd=tree, capture_output=True, timeout=600)
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
                killed = not tests_pass(tree, file)
            finally:
                path.write_text(original)
            survivors += not killed
            status = "killed  " if killed else "SURVIVED"
            print(f"{status} {file}: {text!r} -> {replacement!r}")
        print(f"module-level mutants: {len(MUTANTS) - survivors} of {len(MUTANTS)} killed")
        return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
