"""The drift reference (fmnist.contract) and the in-process parts of the monitoring signals:
parsing the reference from metadata, refusing malformed ones, the catalog's reading of it,
and the request body sizes the routes record."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fmnist.contract import (
    CONFIDENCE_BUCKETS,
    KEY_REFERENCE,
    ReferenceDistribution,
    reference_distribution,
)
from fmnist.dataset import CLASS_NAMES
from service.catalog import CatalogError, missing_reference_warning, reference_of


def probabilities(classes: list[int], confidence: list[float]) -> np.ndarray:
    """(N, 10) rows whose argmax is ``classes[i]`` with probability ``confidence[i]``."""
    rows = np.full((len(classes), 10), 0.0)
    for i, (c, p) in enumerate(zip(classes, confidence, strict=True)):
        rows[i] = (1 - p) / 9
        rows[i, c] = p
    return rows.astype(np.float32)


def test_reference_shares_and_cumulative_confidence() -> None:
    probs = probabilities([0, 0, 3, 9], [0.25, 0.55, 0.93, 1.0])
    ref = reference_distribution(probs, CLASS_NAMES)
    assert ref.images == 4
    assert list(ref.class_share) == list(CLASS_NAMES)
    assert ref.class_share["T-shirt/top"] == 0.5
    assert ref.class_share["Dress"] == 0.25 and ref.class_share["Ankle boot"] == 0.25
    assert sum(ref.class_share.values()) == pytest.approx(1.0)
    assert ref.confidence_le == CONFIDENCE_BUCKETS
    cumulative = dict(zip(ref.confidence_le, ref.confidence_share, strict=True))
    # <= like a Prometheus bucket: 1.0 is in le=1.0.
    assert cumulative[0.2] == 0 and cumulative[0.3] == 0.25 and cumulative[0.5] == 0.25
    assert cumulative[0.6] == 0.5 and cumulative[0.9] == 0.5 and cumulative[0.95] == 0.75
    assert cumulative[0.99] == 0.75 and cumulative[1.0] == 1.0


def test_reference_round_trips_through_json_and_metadata() -> None:
    ref = reference_distribution(probabilities([1, 2, 2], [0.4, 0.7, 0.9]), CLASS_NAMES)
    text = ref.to_json()
    assert ReferenceDistribution.from_json(text, CLASS_NAMES) == ref
    # The service reads metadata already JSON-decoded (service/inference.py's card).
    assert ReferenceDistribution.from_json(json.loads(text), CLASS_NAMES) == ref
    assert reference_of({KEY_REFERENCE: json.loads(text)}, "m.onnx") == ref
    assert reference_of({"model_name": "old"}, "old.onnx") is None


def _broken(**change: Any) -> dict[str, Any]:
    doc = json.loads(
        reference_distribution(probabilities([0, 1], [0.6, 0.8]), CLASS_NAMES).to_json()
    )
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ("not json", "malformed"),
        ({"images": 3}, "malformed (KeyError"),
        (_broken(class_share={"a": 1.0}), "has classes ['a']"),
        (_broken(class_share=dict.fromkeys(CLASS_NAMES, 0.5)), "not a distribution"),
        (_broken(images=0), "not a distribution"),
        (_broken(confidence_share=[0.5] * 11 + [0.2]), "not cumulative"),
        (_broken(confidence_le=[0.5]), "not cumulative"),
    ],
)
def test_a_malformed_reference_is_refused_with_one_line(doc: Any, words: str) -> None:
    with pytest.raises(CatalogError) as caught:
        reference_of({KEY_REFERENCE: doc}, "/m/x.onnx")
    message = str(caught.value)
    assert message.startswith("/m/x.onnx: reference_distribution") and words in message
    assert "fmnist-export" in message and "\n" not in message


def test_missing_reference_warning_names_the_model_and_what_is_lost() -> None:
    line = missing_reference_warning("baseline", "/m/baseline.onnx")
    assert "baseline (/m/baseline.onnx)" in line and KEY_REFERENCE in line
    assert "drift" in line and "\n" not in line


def test_reference_needs_probabilities_of_every_class() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, 10\) probabilities"):
        reference_distribution(np.zeros((3, 4)), CLASS_NAMES)
    with pytest.raises(ValueError, match="expected"):
        reference_distribution(np.zeros((0, 10)), CLASS_NAMES)


def body_sizes() -> dict[str, tuple[float, float]]:
    """fmnist_request_body_bytes: path → (count, sum), from the process's registry."""
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.name in ("fmnist_request_body_bytes_count", "fmnist_request_body_bytes_sum"):
                out.setdefault(s.labels["path"], [0.0, 0.0])[s.name.endswith("_sum")] = s.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def test_routes_record_body_sizes_by_route_template(api: Any) -> None:
    json_body = {"headers": {"content-type": "application/json"}}
    before = body_sizes()
    body = json.dumps({"pixels": np.zeros((2, 28, 28), int).tolist()}).encode()
    assert api.post("/classify_batch", content=body, **json_body).status_code == 200
    assert api.post("/classify_batch", content=b"{oops", **json_body).status_code == 400
    v2 = {"inputs": [{"name": "pixels", "shape": [1, 28, 28], "datatype": "UINT8"}]}
    v2["inputs"][0]["data"] = [0] * 784
    v2_body = json.dumps(v2).encode()
    assert api.post("/v2/models/baseline/infer", content=v2_body, **json_body).status_code == 200
    too_big = b"x" * 200_001
    assert api.post("/classify_batch", content=too_big, **json_body).status_code == 413
    after = body_sizes()

    def delta(path: str) -> tuple[float, float]:
        b = before.get(path, (0.0, 0.0))
        a = after.get(path, (0.0, 0.0))
        return a[0] - b[0], a[1] - b[1]

    assert delta("/classify_batch") == (3, len(body) + len(b"{oops") + len(too_big))
    # The template, not the model's name: one series per route, whatever the path holds.
    assert delta("/v2/models/{name}/infer") == (1, len(v2_body))
    assert not any("baseline" in path for path in after)
    # Routes that read no body record nothing.
    assert api.get("/models").status_code == 200
    assert body_sizes() == after
