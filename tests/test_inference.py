"""The model wrapper and the answer encoder: what a worker runs per batch and per reply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.endpoints import JSONAnswer
from service.http_api import batch_answer, single_answer
from service.inference import ModelOutputError, OnnxModel


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


def test_the_answer_encoder_sends_what_json_dumps_would(model: OnnxModel) -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (64, 28, 28)).astype(np.uint8)
    probabilities = model.predict(pixels)
    for answer in (batch_answer("baseline", probabilities), single_answer("x", probabilities[0])):
        body = JSONAnswer(answer).body
        assert json.loads(body) == answer  # every float back exactly, bit for bit
        assert body == json.dumps(answer, separators=(",", ":")).encode()
