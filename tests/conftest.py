"""Shared fixtures: a small synthetic Fashion-MNIST on disk and small exported ONNX models.

Nothing here needs the real dataset. The synthetic images are class-dependent (a bright
band whose row depends on the label, plus noise) so that a few training steps can learn
them and a classifier's answers are not all the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.dataset import FILES, write_idx


def make_images(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + int(label) * 2
        images[i, row : row + 3, 4:24] = 200 + rng.integers(0, 55)
    return images


def write_synthetic_dataset(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """Four gzipped IDX files with the real names; checksums will not match the real set."""
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 10, n_train).astype(np.uint8)
    test_labels = (np.arange(n_test) % 10).astype(np.uint8)
    write_idx(folder / FILES["train_images"][0], make_images(train_labels, 1))
    write_idx(folder / FILES["train_labels"][0], train_labels)
    write_idx(folder / FILES["test_images"][0], make_images(test_labels, 2))
    write_idx(folder / FILES["test_labels"][0], test_labels)
    return folder


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("fmnist-synthetic"))


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """baseline.onnx and deeper.onnx exported from seeded, untrained networks.

    Exporting is slow-ish (a few seconds each), so it happens once per session. Tests that
    use it need torch (the training extra); the service and evaluation code under test
    does not.
    """
    torch = pytest.importorskip("torch")
    from training.export import export_onnx
    from training.models import MODELS, build_model, count_parameters

    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name in MODELS:
        torch.manual_seed(0)
        net = build_model(name).eval()
        paths[name] = export_onnx(
            net,
            folder / f"{name}.onnx",
            {
                "model_name": name,
                "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
                "parameters": str(count_parameters(net)),
                "test_accuracy": "0.1",
                "val_accuracy": "0.1",
                "code_revision": "test",
            },
        )
    return paths
