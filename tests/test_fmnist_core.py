"""The torch-free core beyond the dataset: the ONNX contract's helpers, the model registry
and the calibration metric, on cases small enough to check by hand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fmnist.contract import as_input, file_sha256, onnx_dir, onnx_filename, scale_pixels
from fmnist.metrics import reliability
from fmnist.registry import (
    REGISTRY,
    ModelSpec,
    beyond_study,
    get_spec,
    model_names,
    register,
    study_models,
    unregister,
)

# --- the contract ---------------------------------------------------------------------


def test_scale_pixels_maps_0_255_onto_minus_1_1() -> None:
    scaled = scale_pixels(np.array([0, 51, 127.5, 255], dtype=np.float64))
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, np.array([-1.0, -0.6, 0.0, 1.0], dtype=np.float32))
    assert scale_pixels(np.full((2, 2), 255, dtype=np.uint8)).tolist() == [[1.0, 1.0]] * 2


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28)])
def test_as_input_is_the_graphs_tensor(shape: tuple[int, ...]) -> None:
    images = np.arange(np.prod(shape)).reshape(shape).astype(np.uint8)
    tensor = as_input(images)
    assert tensor.shape == (3, 1, 28, 28) and tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(tensor.ravel(), images.ravel().astype(np.float32))


def test_onnx_filename_and_folder() -> None:
    assert onnx_filename("deeper") == "deeper.onnx"
    assert onnx_dir() == Path("artifacts/onnx")
    assert onnx_dir("/tmp/run") == Path("/tmp/run/onnx")


@pytest.mark.parametrize("size", [0, 5, (1 << 20) * 2 + 3])  # empty, small, > two chunks
def test_file_sha256_is_the_files_sha256(tmp_path: Path, size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == expected
    assert file_sha256(str(path)) == expected


# --- the registry ---------------------------------------------------------------------


@pytest.fixture
def tiny() -> Iterator[ModelSpec]:
    spec = ModelSpec("tiny-test-model", True, "study", "a model registered by a test")
    yield spec
    unregister(spec.name)


def test_register_and_unregister(tiny: ModelSpec) -> None:
    before = model_names()
    assert register(tiny) is tiny
    assert model_names() == (*before, "tiny-test-model")  # registration order
    assert study_models()[-1] == "tiny-test-model"
    assert get_spec("tiny-test-model") is tiny
    unregister("tiny-test-model")
    assert model_names() == before
    unregister("tiny-test-model")  # removing an absent name is not an error


def test_a_name_registered_twice_is_refused(tiny: ModelSpec) -> None:
    register(tiny)
    with pytest.raises(ValueError, match="model 'tiny-test-model' is already registered"):
        register(ModelSpec("tiny-test-model", False, "improved", "another"))
    assert REGISTRY["tiny-test-model"] is tiny


def test_models_outside_the_study_are_not_study_models(tiny: ModelSpec) -> None:
    register(ModelSpec(tiny.name, False, tiny.recipe, tiny.summary))
    assert "tiny-test-model" in model_names()
    assert "tiny-test-model" not in study_models()
    assert beyond_study()[-1] == "tiny-test-model"
    assert set(beyond_study()) | set(study_models()) == set(model_names())
    assert not set(beyond_study()) & set(study_models())


def test_unknown_model_names_the_known_ones() -> None:
    assert get_spec("deeper").name == "deeper"
    with pytest.raises(ValueError) as excinfo:
        get_spec("resnet")
    assert str(excinfo.value) == (
        f"unknown model 'resnet'; expected one of {', '.join(model_names())}"
    )
    assert excinfo.value.__suppress_context__  # no KeyError chained to the user's message


# --- calibration ----------------------------------------------------------------------


def test_reliability_by_hand_with_the_default_15_bins() -> None:
    # Bins (k/15, (k+1)/15]. 0.1 → bin 1, 0.5 → bin 7, 0.9 → bin 13, 1.0 → bin 14.
    #   bin 1:  1 image, wrong,        confidence 0.1  → |0 - 0.1|   = 0.1,  weight 1/6
    #   bin 7:  2 images, 1 right,     confidence 0.5  → |0.5 - 0.5| = 0,    weight 2/6
    #   bin 13: 2 images, both right,  confidence 0.9  → |1 - 0.9|   = 0.1,  weight 2/6
    #   bin 14: 1 image, wrong,        confidence 1.0  → |0 - 1|     = 1,    weight 1/6
    # ECE = (0.1 + 0 + 0.2 + 1) / 6 = 1.3 / 6
    conf = np.array([0.1, 0.5, 0.5, 0.9, 0.9, 1.0])
    y_true = np.array([3, 1, 2, 4, 5, 6])
    y_pred = np.array([0, 1, 0, 4, 5, 0])
    rel = reliability(y_true, y_pred, conf)
    assert rel.ece == pytest.approx(1.3 / 6)
    assert rel.counts == [0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2, 1]
    empty = [None] * 15
    assert rel.accuracy == pytest.approx(
        [*empty[:1], 0.0, *empty[2:7], 0.5, *empty[8:13], 1.0, 0.0]
    )
    assert rel.confidence == pytest.approx(
        [*empty[:1], 0.1, *empty[2:7], 0.5, *empty[8:13], 0.9, 1.0]
    )
    assert rel.edges == pytest.approx([k / 15 for k in range(16)])


def test_reliability_bins_are_right_closed() -> None:
    # 5 bins: 0.2 is the top of the first bin (0, 0.2], 0.2 + 1e-9 opens the second.
    rel = reliability(np.zeros(4, int), np.zeros(4, int), np.array([0.0, 0.2, 0.2 + 1e-9, 0.4]), 5)
    assert rel.counts == [2, 2, 0, 0, 0]
    assert rel.confidence[2:] == [None, None, None]
    assert rel.edges == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert rel.ece == pytest.approx((2 * (1 - 0.1) + 2 * (1 - (0.2 + 1e-9 + 0.4) / 2)) / 4)


def test_reliability_weighs_bins_by_their_share_of_images() -> None:
    # 1 wrong image at 0.9 and 3 right ones at 0.3: gaps 0.9 and 0.7 weighted 1/4 and 3/4.
    rel = reliability(
        np.array([1, 0, 0, 0]), np.array([0, 0, 0, 0]), np.array([0.9, 0.3, 0.3, 0.3]), bins=2
    )
    assert rel.counts == [3, 1]
    assert rel.ece == pytest.approx(0.25 * 0.9 + 0.75 * 0.7)
    assert rel.accuracy == [1.0, 0.0] and rel.confidence == pytest.approx([0.3, 0.9])


def test_reliability_bins_float32_confidences_by_their_exact_value() -> None:
    # float32(0.2) is 0.2000000030: above 0.2, so in the second of 5 bins. Multiplying in
    # float32 would round it down to exactly 1.0 and into the first bin.
    rel = reliability(np.array([0]), np.array([0]), np.array([0.2], dtype=np.float32), bins=5)
    assert rel.counts == [0, 1, 0, 0, 0]


def test_reliability_counts_a_probability_rounded_above_1_in_the_top_bin() -> None:
    # A float32 softmax can return 1.0000001; it belongs to the top bin, not a 16th one.
    rel = reliability(np.array([0, 0]), np.array([0, 0]), np.array([1.0000001, 1.5]))
    assert len(rel.counts) == 15 and rel.counts[14] == 2
