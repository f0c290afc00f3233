"""training/export.py: self-contained file, dynamic batch, raw-pixel contract, metadata, parity.

The first tests export the study's real architectures (the session's fixture models). The
rest use tiny networks (each < 1 s) and pin the module where it is defined: the raw-pixel
wrapper's scaling and temperature, the parity check's tolerance and its failing path, the
metadata keys and formats, the dynamic batch, the self-contained file, the code revision
and every exit of the CLI (all of it is what `make mutation` runs against the module).
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import training.export as export_mod
import training.recipe as recipe_mod
from fmnist import contract
from fmnist.contract import file_sha256
from fmnist.dataset import CLASS_NAMES, DatasetError, Split
from training.data import load_datasets, scale_pixels
from training.export import (
    OPSET,
    PARITY_TOLERANCE,
    ExportError,
    ParityReport,
    RawPixelModel,
    check_parity,
    code_revision,
    export_onnx,
    export_run,
    main,
    onnx_session,
)
from training.models import build_model, count_parameters
from training.recipe import RegistryError
from training.train import TrainConfig, train_model


@pytest.mark.parametrize("name", ["baseline", "deeper"])
def test_file_is_self_contained_with_dynamic_batch(onnx_models: dict[str, Path], name: str) -> None:
    path = onnx_models[name]
    assert list(path.parent.glob("*.data")) == []
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_name"] == name
    assert json.loads(meta["class_names"])[6] == "Shirt"
    sess = onnx_session(path)
    assert [i.name for i in sess.get_inputs()] == ["pixels"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    for batch in (1, 257):
        logits, probs = sess.run(None, {"pixels": np.full((batch, 1, 28, 28), 80, np.float32)})
        assert logits.shape == probs.shape == (batch, 10)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_graph_does_the_scaling(onnx_models: dict[str, Path]) -> None:
    torch.manual_seed(0)  # the fixture's seed: the same untrained weights
    net = build_model("baseline").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    onnx_logits = onnx_session(onnx_models["baseline"]).run(
        ["logits"], {"pixels": images[:, None].astype(np.float32)}
    )[0]
    with torch.no_grad():
        torch_logits = net(scale_pixels(images)).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


def test_export_run_checks_parity_and_fails_loudly(
    synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_datasets(synthetic_data_dir, seed=0, verify=False)
    train_model(TrainConfig.for_model("baseline", epochs=1, limit_batches=3), data, tmp_path)
    run = tmp_path / "runs" / "baseline"
    record = export_run(run, tmp_path / "baseline.onnx", data.test_images)
    assert record["parity_images"] == 200 and record["argmax_mismatches"] == 0
    assert record["max_abs_logit_diff"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "baseline.onnx")).metadata_props}
    assert meta["parameters"] == "421642" and meta["torch_version"] == torch.__version__
    assert "train-images-idx3-ubyte" in json.loads(meta["dataset_md5"])
    assert float(meta["test_accuracy"]) == pytest.approx(
        json.loads((run / "summary.json").read_text())["test_acc"], abs=1e-6
    )

    net = build_model("baseline")
    net.load_state_dict(torch.load(run / "final.pt", weights_only=True))
    report = check_parity(tmp_path / "baseline.onnx", net.eval(), data.test_images)
    assert report.ok

    monkeypatch.setattr(export_mod, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_run(run, tmp_path / "again.onnx", data.test_images)
    assert not (tmp_path / "again.onnx").exists()


def test_temperature_is_folded_into_the_graph(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)  # the fixture's seed: the same untrained weights
    net = build_model("baseline").eval()
    scaled = export_mod.export_onnx(
        net, tmp_path / "t.onnx", {"model_name": "baseline"}, temperature=2.0
    )
    pixels = np.random.default_rng(1).integers(0, 256, (8, 1, 28, 28)).astype(np.float32)
    plain_logits = onnx_session(onnx_models["baseline"]).run(["logits"], {"pixels": pixels})[0]
    logits, probs = onnx_session(scaled).run(None, {"pixels": pixels})
    np.testing.assert_allclose(logits, plain_logits / 2.0, atol=1e-5)
    assert (probs.argmax(1) == plain_logits.argmax(1)).all()
    assert check_parity(scaled, net, pixels[:, 0].astype(np.uint8), temperature=2.0).ok


def test_parity_tolerance_is_pinned() -> None:
    # float32 round-off between onnxruntime and PyTorch is ~1e-6; 1e-4 is the promise.
    assert PARITY_TOLERANCE == 1e-4
    assert ParityReport(10, 1e-4, 0).ok
    assert not ParityReport(10, 1.01e-4, 0).ok
    assert not ParityReport(10, 0.0, 1).ok  # one flipped answer fails whatever the logits


def test_training_scales_pixels_as_the_contract_and_the_graph_do() -> None:
    images = np.array([[[0, 51, 255] + [0] * 25] * 28], dtype=np.uint8)  # (1, 28, 28)
    x = scale_pixels(images)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 0, :3].tolist() == pytest.approx([-1.0, -0.6, 1.0], abs=1e-7)
    # Bit for bit the same numbers as fmnist.contract (what the service's clients use).
    assert np.array_equal(x.numpy(), contract.scale_pixels(images)[:, None])


def test_default_locations_are_pinned() -> None:
    assert Path("artifacts") == contract.ARTIFACTS_DIR
    assert contract.onnx_dir() == Path("artifacts/onnx")
    assert contract.onnx_dir("out") == Path("out/onnx")
    assert Path("docs/results") == contract.RESULTS_DIR


# -- with tiny networks (each test < 1 s): the tests `make mutation` runs ----------------


class Corner(nn.Module):
    """Logits = the first 10 scaled pixels of row 0 (what the wrapper feeds the net)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :10] * 1.0


class Tiny(nn.Module):
    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(28 * 28, 10)
        self.shift = shift  # added to every logit of an image whose pixel (0, 0) is 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))
        return logits + (x[:, 0, 0, 0:1] + 1.0) / 2.0 * self.shift


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny exported into folders that do not exist yet, with metadata of three kinds."""
    target = tmp_path_factory.mktemp("tiny") / "a" / "b" / "tiny.onnx"
    metadata = {"model_name": "tiny", "class_names": ["x", "y"], "parameters": 3}
    assert export_onnx(Tiny().eval(), target, metadata) == target
    return target


def test_pinned_constants() -> None:
    assert OPSET == 18
    assert PARITY_TOLERANCE == 1e-4  # float32 round-off is ~1e-6; 1e-4 is the promise
    assert ParityReport(10, 1e-4, 0).ok
    assert not ParityReport(10, 1.01e-4, 0).ok
    assert not ParityReport(10, 0.0, 1).ok


def test_wrapper_scales_raw_pixels_to_minus_one_one() -> None:
    pixels = torch.zeros(2, 1, 28, 28)
    pixels[0, 0, 0, :3] = torch.tensor([0.0, 127.5, 255.0])
    wrapped = RawPixelModel(Corner())
    assert wrapped.inv_temperature == 1.0
    logits, probs = wrapped(pixels)
    assert logits[0, :3].tolist() == [-1.0, 0.0, 1.0]
    assert logits[1].tolist() == [-1.0] * 10
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


def test_wrapper_divides_logits_by_the_temperature() -> None:
    pixels = torch.zeros(2, 1, 28, 28)
    pixels[:, 0, 0, :3] = torch.tensor([0.0, 127.5, 255.0])
    wrapped = RawPixelModel(Corner(), temperature=2.0)
    assert wrapped.inv_temperature == 0.5
    logits, probs = wrapped(pixels)
    assert logits[0, :3].tolist() == [-0.5, 0.0, 0.5]
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    cold = RawPixelModel(Corner(), temperature=0.5)  # a temperature below 1 sharpens
    assert cold(pixels)[0][0, :3].tolist() == [-2.0, 0.0, 2.0]


def test_export_writes_one_self_contained_file_with_the_contract(tiny_onnx: Path) -> None:
    target = tiny_onnx
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.onnx"]  # no .data, .tmp
    proto = onnx.load(str(target), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain == ""] == [("", 18)]
    assert proto.doc_string == "Fashion-MNIST tiny: raw pixels 0-255 in"
    # str values as they are, anything else as JSON; nothing else in metadata_props.
    assert [(p.key, p.value) for p in proto.metadata_props] == [
        ("model_name", "tiny"),
        ("class_names", '["x", "y"]'),
        ("parameters", "3"),
    ]
    graph = proto.graph
    assert [i.name for i in graph.input] == ["pixels"]
    assert [o.name for o in graph.output] == ["logits", "probabilities"]
    dims = [(d.dim_param, d.dim_value) for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [("batch", 0), ("", 1), ("", 28), ("", 28)]  # the batch is dynamic
    sess = onnx_session(target)
    for batch in (1, 2, 5):
        logits, probs = sess.run(None, {"pixels": np.full((batch, 1, 28, 28), 9, np.float32)})
        assert logits.shape == probs.shape == (batch, 10)


def test_export_overwrites_and_names_an_unnamed_model_cnn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing is written to the working folder either
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")  # an existing file in an existing folder
    export_onnx(Tiny().eval(), target, {})
    proto = onnx.load(str(target))
    assert proto.doc_string == "Fashion-MNIST CNN: raw pixels 0-255 in"
    assert list(proto.metadata_props) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_export_folds_the_temperature_in(tmp_path: Path, tiny_onnx: Path) -> None:
    hot = export_onnx(Tiny().eval(), tmp_path / "t.onnx", {}, temperature=4.0)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)).astype(np.float32)
    plain = onnx_session(tiny_onnx).run(["logits"], {"pixels": pixels})[0]
    np.testing.assert_allclose(onnx_session(hot).run(["logits"], {"pixels": pixels})[0], plain / 4)


def test_onnx_session_threads_and_provider(tiny_onnx: Path) -> None:
    assert onnx_session(tiny_onnx).get_providers() == ["CPUExecutionProvider"]
    assert onnx_session(tiny_onnx).get_session_options().intra_op_num_threads == 0
    assert onnx_session(tiny_onnx, threads=3).get_session_options().intra_op_num_threads == 3


def images_with_last_marked(n: int) -> np.ndarray:
    images = np.random.default_rng(1).integers(0, 200, (n, 28, 28)).astype(np.uint8)
    images[:, 0, 0] = 0
    images[-1, 0, 0] = 255  # only the last image sees Tiny's shift
    return images


def test_parity_of_the_same_network(tiny_onnx: Path) -> None:
    report = check_parity(tiny_onnx, Tiny().eval(), images_with_last_marked(5), batch=2)
    assert report.images == 5 and report.argmax_mismatches == 0
    assert 0.0 <= report.max_abs_logit_diff <= 1e-5 and report.ok


def test_parity_measures_every_batch_and_every_image(tiny_onnx: Path) -> None:
    # A network that differs by 0.5 on the last image only (in the last, short batch).
    report = check_parity(tiny_onnx, Tiny(shift=0.5).eval(), images_with_last_marked(5), batch=2)
    assert (report.images, report.argmax_mismatches) == (5, 0)  # a shift keeps the argmax
    assert report.max_abs_logit_diff == pytest.approx(0.5, abs=1e-5)
    assert not report.ok


def test_parity_counts_flipped_answers(tiny_onnx: Path) -> None:
    class Flipped(Tiny):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -super().forward(x)

    images = np.random.default_rng(2).integers(0, 256, (7, 28, 28)).astype(np.uint8)
    report = check_parity(tiny_onnx, Flipped().eval(), images, batch=3)
    assert report.images == 7 and report.argmax_mismatches == 7
    hot = check_parity(tiny_onnx, Tiny().eval(), images, temperature=2.0)  # logits halved
    assert hot.max_abs_logit_diff > 1e-3 and hot.argmax_mismatches == 0


SUMMARY = {
    "model": "baseline",
    "test_acc": 0.91234567,
    "final_val_acc": 0.9,
    "best_val_acc": 0.925,
    "dataset_md5": {"train-images-idx3-ubyte": "abc"},
    "config": {"epochs": 1, "lr": 0.01},
}


def write_run(folder: Path, summary: dict[str, Any], seeds: dict[str, int]) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    for weights, seed in seeds.items():
        torch.manual_seed(seed)
        torch.save(build_model("baseline").state_dict(), folder / f"{weights}.pt")
    return folder


def test_export_run_writes_the_metadata_and_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(tmp_path / "run", SUMMARY, {"final": 1})
    written: dict[str, Any] = {}

    def fake_export(net: nn.Module, path: Path, metadata: dict, temperature: float) -> Path:
        written.update(metadata)
        path.write_bytes(b"0123456789")
        return path

    monkeypatch.setattr(export_mod, "export_onnx", fake_export)
    monkeypatch.setattr(export_mod, "check_parity", lambda *a, **k: ParityReport(4, 2e-6, 0))
    reference = contract.reference_distribution(np.eye(10)[[0, 0, 3, 9]], CLASS_NAMES)
    monkeypatch.setattr(export_mod, "reference_on", lambda path, images: reference)
    added: dict[str, str] = {}
    monkeypatch.setattr(export_mod, "add_metadata", lambda path, entries: added.update(entries))
    path = tmp_path / "baseline.onnx"
    record = export_run(run, path, np.zeros((4, 28, 28), np.uint8))
    assert added == {"reference_distribution": reference.to_json()}
    assert record == {
        "model": "baseline",
        "path": str(path),
        "sha256": file_sha256(path),
        "bytes": 10,
        "opset": 18,
        "parity_images": 4,
        "max_abs_logit_diff": 2e-6,
        "argmax_mismatches": 0,
        "reference_images": 4,
    }
    # As export_onnx gets it (it writes str values as they are, the rest as JSON).
    assert written == {
        "model_name": "baseline",
        "class_names": list(CLASS_NAMES),
        "parameters": "421642",
        "test_accuracy": "0.912346",
        "val_accuracy": "0.900000",
        "best_val_accuracy": "0.925000",
        "weights": "final",
        "temperature": "1.000000",
        "dataset_md5": {"train-images-idx3-ubyte": "abc"},
        "code_revision": code_revision(),
        "torch_version": torch.__version__,
        "input_spec": contract.INPUT_SPEC,
        "training_config": {"epochs": 1, "lr": 0.01},
    }


def test_export_run_uses_the_chosen_weights_and_temperature(tmp_path: Path) -> None:
    summary = {**SUMMARY, "exported_weights": "best", "exported_val_acc": 0.93, "temperature": 2}
    run = write_run(tmp_path / "run", summary, {"final": 1, "best": 2})
    images = images_with_last_marked(3)
    record = export_run(run, tmp_path / "m.onnx", images)
    assert (record["parity_images"], record["argmax_mismatches"]) == (3, 0)
    assert 0.0 <= record["max_abs_logit_diff"] <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert (meta["weights"], meta["val_accuracy"], meta["temperature"]) == (
        "best",
        "0.930000",
        "2.000000",
    )
    torch.manual_seed(2)
    net = build_model("baseline").eval()
    with torch.no_grad():
        pixels = torch.from_numpy(images[:, None].astype(np.float32))
        expected = RawPixelModel(net, temperature=2.0)(pixels)[0]
    got = onnx_session(tmp_path / "m.onnx").run(["logits"], {"pixels": pixels.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)  # best.pt, logits / 2
    # The reference: the exported file's own answers on the images, as shares.
    probs = onnx_session(tmp_path / "m.onnx").run(["probabilities"], {"pixels": pixels.numpy()})[0]
    reference = contract.ReferenceDistribution.from_json(
        meta["reference_distribution"], CLASS_NAMES
    )
    assert reference == contract.reference_distribution(probs, CLASS_NAMES)
    assert reference.images == 3 and record["reference_images"] == 3


class Payload:
    """Unpickling it touches a file: what a hostile checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_export_run_loads_weights_without_running_pickled_code(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", SUMMARY, {})
    marker = tmp_path / "code-ran"
    torch.save({**build_model("baseline").state_dict(), "x": Payload(marker)}, run / "final.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        export_run(run, tmp_path / "m.onnx", np.zeros((1, 28, 28), np.uint8))
    assert not marker.exists()


def test_export_run_deletes_a_file_that_fails_parity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(tmp_path / "run", {**SUMMARY, "temperature": 1.5}, {"final": 1})
    calls: dict[str, Any] = {}

    def fake_export(net: nn.Module, path: Path, metadata: dict, temperature: float) -> Path:
        calls["export"] = (count_parameters(net), not net.training, temperature)
        path.write_bytes(b"onnx")
        return path

    def fake_parity(
        path: Path, net: nn.Module, images: np.ndarray, temperature: float
    ) -> ParityReport:
        calls["parity"] = (path.read_bytes(), len(images), temperature)
        return ParityReport(7, 3e-4, 2)

    monkeypatch.setattr(export_mod, "export_onnx", fake_export)
    monkeypatch.setattr(export_mod, "check_parity", fake_parity)
    with pytest.raises(ExportError) as caught:
        export_run(run, tmp_path / "bad.onnx", np.zeros((7, 28, 28), np.uint8))
    assert str(caught.value) == (
        "baseline: ONNX disagrees with PyTorch on 7 images (max |Δlogit| 3.00e-04, "
        "tolerance 0.0001; 2 argmax mismatches); file removed"
    )
    assert not (tmp_path / "bad.onnx").exists()
    assert calls == {"export": (421642, True, 1.5), "parity": (b"onnx", 7, 1.5)}


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def test_code_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "export.py").write_text("x\n")
    git(repo, "add", "export.py")
    git(repo, "commit", "-q", "-m", "one")
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.setattr(export_mod, "__file__", str(repo / "export.py"))
    (repo / "untracked.txt").write_text("not part of the revision\n")
    assert code_revision() == head  # untracked files do not make it dirty
    (repo / "export.py").write_text("changed\n")
    assert code_revision() == head + "-dirty"
    # Not a repository, or no git at all: "unknown".
    monkeypatch.setattr(export_mod, "__file__", str(tmp_path / "export.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert code_revision() == "unknown"
    monkeypatch.setattr(export_mod, "__file__", str(repo / "export.py"))
    monkeypatch.setenv("PATH", "")
    assert code_revision() == "unknown"


# ---- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """load_test_set replaced: records its arguments, returns 3 blank images."""
    calls: list[tuple] = []

    def load(data_dir: Path | None, verify: bool, limit: int | None) -> Split:
        calls.append((data_dir, verify, limit))
        return Split(np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int64))

    monkeypatch.setattr(export_mod, "load_test_set", load)
    return calls


def fake_export_run(calls: list) -> Callable[[Path, Path, np.ndarray], dict[str, Any]]:
    def export(run: Path, onnx_path: Path, images: np.ndarray) -> dict[str, Any]:
        calls.append((run, onnx_path, len(images)))
        return {
            "model": run.name,
            "path": str(onnx_path),
            "sha256": "0123456789abcdef",
            "bytes": 1_050_000,  # 1.05 MB: printed as 1.1 (MB of 10^6 bytes)
            "opset": 18,
            "parity_images": len(images),
            "max_abs_logit_diff": 2.5e-6,
            "argmax_mismatches": 0,
        }

    return export


def finished(out: Path, *models: str) -> None:
    for name in models:
        (out / "runs" / name).mkdir(parents=True)
        (out / "runs" / name / "summary.json").write_text("{}")


def test_cli_exports_every_finished_run_and_writes_export_json(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_data: list,
) -> None:
    out = tmp_path / "out"
    finished(out, "improved", "baseline")
    (out / "runs" / "deeper").mkdir()  # started, never finished: not exported
    (out / "onnx").mkdir()  # (export_onnx makes it as it writes the first file)
    runs: list = []
    monkeypatch.setattr(export_mod, "export_run", fake_export_run(runs))
    assert main(["--out", str(out), "--data-dir", "/d", "--skip-checksums", "--limit", "3"]) == 0
    assert fake_data == [(Path("/d"), False, 3)]
    # Registry order, not the order the folders were made in.
    assert runs == [
        (out / "runs" / "baseline", out / "onnx" / "baseline.onnx", 3),
        (out / "runs" / "improved", out / "onnx" / "improved.onnx", 3),
    ]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"baseline: {out}/onnx/baseline.onnx (1.1 MB, sha256 0123456789ab), parity on 3 "
        "images: max |Δlogit| 2.5e-06, 0 argmax mismatches"
    )
    records = json.loads((out / "onnx" / "export.json").read_text())
    assert [r["model"] for r in records] == ["baseline", "improved"]
    assert (out / "onnx" / "export.json").read_text().startswith('[\n  {\n    "model"')
    assert (out / "onnx" / "export.json").read_text().endswith("}\n]\n")
    assert logging.getLogger("onnxscript").level == logging.WARNING


def test_cli_logs_info_with_the_time_of_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_data: list
) -> None:
    # pytest's own log capture gives the root logger handlers, and basicConfig adds none
    # then: take them away for this test.
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    monkeypatch.setattr(export_mod, "export_run", fake_export_run([]))
    finished(tmp_path, "baseline")
    assert main(["--out", str(tmp_path)]) == 0
    assert logging.root.level == logging.INFO
    (handler,) = logging.root.handlers
    assert handler.formatter is not None
    assert (handler.formatter._fmt, handler.formatter.datefmt) == (
        "%(asctime)s %(message)s",
        "%H:%M:%S",
    )


def test_cli_models_option_and_defaults(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_data: list,
) -> None:
    monkeypatch.chdir(tmp_path)
    finished(tmp_path / "artifacts", "baseline", "deeper")
    runs: list = []
    monkeypatch.setattr(export_mod, "export_run", fake_export_run(runs))
    assert main(["--models", "deeper"]) == 0
    assert fake_data == [(None, True, None)]  # checksums verified, every image
    assert runs == [(Path("artifacts/runs/deeper"), Path("artifacts/onnx/deeper.onnx"), 3)]
    with pytest.raises(SystemExit) as caught:
        main(["--models", "resnet"])
    assert caught.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_cli_without_a_finished_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_data: list,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "error: no finished training run under artifacts/runs; run fmnist-train first\n"
    )
    assert main(["--models", "baseline", "--out", "o"]) == 2
    assert capsys.readouterr().err == (
        "error: no finished training run in o/runs/baseline; run fmnist-train first\n"
    )
    assert not Path("o/onnx").exists()


def test_cli_reports_registry_dataset_and_parity_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken_registry() -> None:
        raise RegistryError("tiny: no architecture")

    with monkeypatch.context() as m:
        m.setattr(recipe_mod, "check_registry", broken_registry)
        assert main([]) == 2
    assert capsys.readouterr().err == "error: tiny: no architecture\n"

    def no_data(data_dir: Path | None, verify: bool, limit: int | None) -> Split:
        raise DatasetError("no dataset here")

    with monkeypatch.context() as m:
        m.setattr(export_mod, "load_test_set", no_data)
        assert main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: no dataset here\n"

    def failing(run: Path, onnx_path: Path, images: np.ndarray) -> dict[str, Any]:
        raise ExportError("baseline: ONNX disagrees")

    finished(tmp_path, "baseline")
    monkeypatch.setattr(
        export_mod, "load_test_set", lambda *a, **k: Split(np.zeros((1, 28, 28)), np.zeros(1))
    )
    monkeypatch.setattr(export_mod, "export_run", failing)
    assert main(["--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "error: baseline: ONNX disagrees\n"
    assert not (tmp_path / "onnx" / "export.json").exists()


def test_cli_help_says_what_each_option_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "\nExport trained runs to ONNX with a parity check.\n" in out
    text = " ".join(out.split())
    for phrase in [
        "--models {baseline,deeper,improved} [{baseline,deeper,improved} ...]",
        "default: every registered model with a finished run under OUT/runs (default: None)",
        "artifacts folder: reads OUT/runs/MODEL, writes OUT/onnx/MODEL.onnx (default: artifacts)",
        "--limit LIMIT parity on the first N test images (default: None)",
        "--data-dir DATA_DIR",
        "--skip-checksums",
    ]:
        assert phrase in text, phrase
