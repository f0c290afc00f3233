"""The model wrapper and the answer encoder: what a worker runs per batch and per reply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.endpoints import JSONAnswer
from service.http_api import batch_answer, single_answer
from service.inference import ModelOutputError, OnnxModel
from service.versions import Target
from training.export import add_metadata


@pytest.fixture(scope="module")
def model(onnx_models: dict[str, Path]) -> OnnxModel:
    return OnnxModel("baseline", onnx_models["baseline"])


def test_predict_answers_a_probability_row_per_image(model: OnnxModel) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    probabilities = model.predict(pixels)
    assert probabilities.shape == (5, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_non_finite_probabilities_are_refused_not_sent(model: OnnxModel) -> None:
    pixels = np.zeros((4, 28, 28), np.float32)
    pixels[1, 3, 3] = np.nan  # the graph turns it into a NaN row, like a broken model would
    with pytest.raises(ModelOutputError, match=r"non-finite probabilities for 1 of 4 images"):
        model.predict(pixels)


def test_answers_carry_the_models_float32_numbers_exactly_in_their_shortest_form(
    model: OnnxModel,
) -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (64, 28, 28)).astype(np.uint8)
    probabilities = model.predict(pixels)
    body = JSONAnswer(batch_answer(Target("baseline", "v", "production"), probabilities)).body
    answer = json.loads(body)
    sent = np.array(answer["probabilities"], dtype=np.float32)
    assert np.array_equal(sent, probabilities)  # bit for bit, once read as float32
    assert answer["class_index"] == probabilities.argmax(axis=1).tolist()
    assert np.array_equal(np.array(answer["confidence"], np.float32), probabilities.max(axis=1))
    # the shortest decimal of each float32 (numpy's repr), not the float64 one's 17 digits
    assert answer["probabilities"] == [[float(str(v)) for v in row] for row in probabilities]
    float64_text = json.dumps(probabilities.tolist(), separators=(",", ":"))
    assert len(body) < 0.75 * len(float64_text)

    one = json.loads(JSONAnswer(single_answer(Target("x", "v", None), probabilities[0])).body)
    assert list(one["probabilities"].values()) == [float(str(v)) for v in probabilities[0]]
    assert one["class_index"] == int(probabilities[0].argmax())
    assert one["confidence"] == float(str(probabilities[0].max()))


def test_a_model_card_with_integers_beyond_64_bits_still_encodes(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    """GET /models answers the card through the same encoder, which carries 64-bit integers
    at most: a hand-edited file's huge numbers become None (a number field) or a float."""
    path = shutil.copy(onnx_models["baseline"], tmp_path / "baseline.onnx")
    huge = "1" + "0" * 30
    add_metadata(path, {"parameters": huge, "history": f'{{"steps": {huge}}}'})
    card = OnnxModel("baseline", path).card.to_json()
    answer = json.loads(JSONAnswer(card).body)
    assert answer["parameters"] is None
    assert answer["metadata"]["history"] == {"steps": 1e30}
