"""The project's shape: which package may import which, training without scipy/sklearn,
and a fourth model added as the README says (one class, one registry entry, one recipe).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmnist.registry import ModelSpec, model_names, register, unregister

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fmnist", "training", "service", "evaluation", "loadtests", "benchmarks", "scripts")

# The only edges between top-level packages besides X → fmnist, each with its reason.
# A module that starts the service as a process imports the helper that starts it; a
# benchmark imports what it measures. Keys: (importing file, imported module or package).
ALLOWED_EDGES: dict[tuple[str, str], str] = {
    ("loadtests/run.py", "service.launch"): "starts the service under load",
    ("loadtests/dashboard.py", "service.launch"): "starts the service it draws the dashboard of",
    ("loadtests/rollout.py", "service.launch"): "starts the service it promotes and stops",
    ("scripts/pipeline.py", "service.launch"): "starts the service it evaluates",
    ("benchmarks/serve_throughput.py", "service.launch"): "starts the service it measures",
    ("benchmarks/eval_throughput.py", "service.launch"): "starts the service it queries",
    ("benchmarks/eval_throughput.py", "evaluation.client"): "measures evaluation's client",
    ("benchmarks/train_throughput.py", "training"): "measures training's step",
}
# The torch-free core stays light: the service and evaluation import it without these.
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "bentoml", "scipy", "sklearn")


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    """Every absolute import in a file (top level or inside a function), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from service import launch`` imports service.launch: name both.
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _within(module: str, target: str) -> bool:
    return module == target or module.startswith(target + ".")


def forbidden_edges() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for module, line in imported_modules(path):
                top = module.split(".")[0]
                if package == "fmnist" and top in HEAVY:
                    found.append(f"{rel}:{line} imports {module} (fmnist is the light core)")
                if top not in PACKAGES or top in (package, "fmnist"):
                    continue
                if not any(src == rel and _within(module, target) for src, target in ALLOWED_EDGES):
                    found.append(f"{rel}:{line} imports {module}")
    return found


def test_imports_follow_the_direction_of_dependencies() -> None:
    """X → fmnist for every package; nothing sideways but the edges named above."""
    assert forbidden_edges() == []


def test_the_import_check_sees_function_level_and_from_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import numpy\nfrom service import launch\ndef f():\n    from evaluation.cli import main\n"
    )
    assert [m for m, _ in imported_modules(source)] == [
        "numpy",
        "service.launch",
        "evaluation.cli.main",
    ]
    assert _within("training.train.main", "training") and not _within("trainingx", "training")


def test_allowed_edges_are_still_used() -> None:
    """An exception nobody needs any more is removed, not kept as a silent loophole."""
    used = {
        (path.relative_to(ROOT).as_posix(), target)
        for (src, target) in ALLOWED_EDGES
        for path in [ROOT / src]
        if path.exists() and any(_within(m, target) for m, _ in imported_modules(path))
    }
    assert used == set(ALLOWED_EDGES)


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
    from service.launch import bentoml_server

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
