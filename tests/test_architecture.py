"""The project's shape: which package may import which (import-linter's contracts in
pyproject.toml), training without scipy/sklearn, and a fourth model added as the README says
(one class, one registry entry, one recipe).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmnist.registry import ModelSpec, model_names, register, unregister

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fmnist", "training", "service", "evaluation", "loadtests", "benchmarks", "scripts")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # the dev extra installs it


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``cwd`` with the pyproject.toml there."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_follow_the_direction_of_dependencies() -> None:
    """X → fmnist for every package; nothing sideways but the edges pyproject.toml names."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The packages and pyproject.toml, copied: a place to break the contracts in."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + textwrap.dedent(code))


def test_the_contracts_catch_forbidden_imports(project_copy: Path) -> None:
    """Each contract goes red on an import it forbids, inside a function too."""
    _append(project_copy / "fmnist" / "contract.py", "def _f():\n    import torch\n")
    _append(project_copy / "training" / "data.py", "from service import settings\n")
    _append(project_copy / "benchmarks" / "loadgen.py", "def _g():\n    import evaluation.run\n")
    _append(project_copy / "scripts" / "screenshots.py", "from training import train\n")
    done = lint_imports(project_copy)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "Contracts: 0 kept, 4 broken." in out, out
    for edge in (
        "fmnist.contract -> torch",
        "training.data -> service.settings",
        "benchmarks.loadgen -> evaluation.run",
        "scripts.screenshots -> training.train",
    ):
        assert edge in out, (edge, out)


def test_an_allowed_edge_nobody_uses_is_an_error(project_copy: Path) -> None:
    """An exception nobody needs any more is removed, not kept as a silent loophole."""
    pipeline = project_copy / "scripts" / "pipeline.py"
    line = "from loadtests.launch import bentoml_server  # starts the service as a process\n"
    assert line in pipeline.read_text()
    pipeline.write_text(pipeline.read_text().replace(line, ""))
    done = lint_imports(project_copy)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "No matches for ignored import scripts.pipeline -> loadtests.launch." in (
        done.stdout + done.stderr
    )


BLOCKER = '''
"""Test-only: scipy and scikit-learn look not installed, as in a `.[training]` install."""
import sys
from importlib.machinery import PathFinder

BLOCKED = {"scipy", "sklearn"}


class NotInstalled:
    """The path finder, except that the blocked packages are not found."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None  # as for a package that is not installed: ModuleNotFoundError
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [NotInstalled if f is PathFinder else f for f in sys.meta_path]
'''

TRAIN_WITHOUT_SCIPY = """
import importlib
import json
import sys
from pathlib import Path

for blocked in ("scipy", "sklearn"):
    try:
        importlib.import_module(blocked)
    except ImportError:
        pass
    else:
        sys.exit(f"{blocked} is importable: the blocker is not active")

import training.train as train
from training.data import load_datasets

data_dir, out = sys.argv[1], Path(sys.argv[2])
# The improved recipe: augmentation, one-cycle, then temperature scaling and calibration.
data = load_datasets(data_dir, seed=0, verify=False)
cfg = train.TrainConfig.for_model("improved", epochs=1, limit_batches=3)
summary = train.train_model(cfg, data, out / "api")
# And the CLI, as a user runs it.
code = train.main(
    ["--models", "baseline", "--epochs", "1", "--limit-batches", "3",
     "--data-dir", data_dir, "--skip-checksums", "--out", str(out / "cli")]
)
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "sklearn", "evaluation"})
print(json.dumps({"summary": summary, "code": code, "loaded": loaded}))
"""


@pytest.mark.slow
def test_training_runs_without_scipy_and_sklearn(synthetic_data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_WITHOUT_SCIPY, str(synthetic_data_dir), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["loaded"] == []
    summary = result["summary"]
    assert summary["model"] == "improved" and summary["epochs"] == 1
    assert summary["temperature"] > 0 and summary["temperature"] != 1.0  # it was fitted
    assert set(summary["calibration"]) == {"val_before", "val_after", "test_before", "test_after"}
    assert 0.0 <= summary["calibration"]["test_after"]["ece"] <= 1.0
    assert (tmp_path / "cli" / "runs" / "baseline" / "summary.json").exists()


# -- a fourth model, added as the README's layout section says ---------------------------

TINY = "tiny"


@pytest.fixture
def tiny_model() -> Iterator[str]:
    """One class, one registry entry, one recipe; all removed afterwards."""
    import torch
    from torch import nn

    from training import models, recipe

    class TinyCNN(nn.Module):
        """conv8 → pool → fc10: small enough to train and export in seconds."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 7 * 7, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    register(ModelSpec(TINY, False, "tiny-recipe", "test-only: conv8-pool-fc10"))
    models.ARCHITECTURES[TINY] = TinyCNN
    recipe.RECIPES["tiny-recipe"] = recipe.Recipe(epochs=1, batch_size=32, lr=3e-3)
    try:
        yield TINY
    finally:
        unregister(TINY)
        models.ARCHITECTURES.pop(TINY, None)
        recipe.RECIPES.pop("tiny-recipe", None)


def test_a_half_added_model_is_a_clear_startup_error(capsys: pytest.CaptureFixture[str]) -> None:
    import training.train as train

    register(ModelSpec("half", False, "no-such-recipe", "test-only"))
    try:
        assert train.main(["--models", "baseline", "--epochs", "1"]) == 2
    finally:
        unregister("half")
    err = capsys.readouterr().err
    assert "half: no architecture in training.models.ARCHITECTURES" in err
    assert "half: recipe 'no-such-recipe' not in training.recipe.RECIPES" in err


@pytest.mark.slow
def test_a_fourth_model_trains_exports_serves_and_evaluates(
    tiny_model: str, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    import onnx

    import training.export as export
    import training.train as train

    assert tiny_model in model_names()
    data = ["--data-dir", str(synthetic_data_dir), "--skip-checksums"]
    out = tmp_path / "artifacts"
    quick = ["--epochs", "1", "--limit-batches", "3"]
    assert train.main(["--models", tiny_model, *quick, *data, "--out", str(out)]) == 0
    assert export.main(["--models", tiny_model, *data, "--out", str(out)]) == 0
    onnx_folder = out / "onnx"
    (record,) = json.loads((onnx_folder / "export.json").read_text())
    assert record["model"] == tiny_model and record["argmax_mismatches"] == 0
    assert record["max_abs_logit_diff"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(onnx_folder / "tiny.onnx")).metadata_props}
    assert (
        meta["model_name"] == tiny_model and meta["parameters"] == "4010"
    )  # conv 8·9+8, fc 392·10+10
    summary = json.loads((out / "runs" / tiny_model / "summary.json").read_text())

    pytest.importorskip("bentoml")
    from loadtests.launch import bentoml_server

    report = tmp_path / "eval"
    env = {"FMNIST_MODEL_DIR": str(onnx_folder), "BENTOML_HOME": str(tmp_path / "bentoml")}
    with bentoml_server(env, log_path=tmp_path / "service.log", ready_timeout_s=180) as url:
        done = subprocess.run(
            [sys.executable, "-m", "evaluation.cli", "--url", url, "--out", str(report)]
            + ["--onnx-dir", str(onnx_folder), "--models", tiny_model, *data],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {tiny_model}
    served = metrics["models"][tiny_model]["metrics"]["accuracy"]["estimate"]
    # What the live service answered is what training measured in-process.
    assert served == pytest.approx(summary["test_acc"], abs=1e-6)
