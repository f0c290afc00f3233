"""The Open Inference Protocol (KServe v2) routes: the request parser case by case, the
routes in-process over a stub backend, and Triton's own Python client (tritonclient[http])
against a real ``bentoml serve``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.schemas import V2InferRequest, V2InferResponse, V2ModelMetadata
from service.v2 import parse_infer_request
from service.validation import InputError
from tests.conftest import ApiClient, StubBackend

IMAGES = np.random.default_rng(3).integers(0, 256, (3, 28, 28), dtype=np.uint8)


def request(
    data: Any = None,
    shape: list[int] | None = None,
    datatype: str = "UINT8",
    name: str = "pixels",
    **extra: Any,
) -> dict[str, Any]:
    tensor = {
        "name": name,
        "shape": [3, 1, 28, 28] if shape is None else shape,
        "datatype": datatype,
        "data": IMAGES.reshape(-1).tolist() if data is None else data,
    }
    return {"inputs": [tensor], **extra}


def parse(doc: Any, max_batch: int = 8) -> Any:
    return parse_infer_request(json.dumps(doc).encode(), None, max_batch)


def binary_body(images: np.ndarray, datatype: str = "UINT8", **extra: Any) -> tuple[bytes, str]:
    data = images.tobytes()
    header = {
        "inputs": [
            {
                "name": "pixels",
                "shape": list(images.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        **extra,
    }
    raw = json.dumps(header).encode()
    return raw + data, str(len(raw))


# --- the parser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        request(),  # flat UINT8 [N, 1, 28, 28]
        request(shape=[3, 28, 28]),
        request(data=IMAGES.tolist(), shape=[3, 28, 28]),  # nested
        request(data=IMAGES.astype(float).reshape(-1).tolist(), datatype="FP32"),
        request(data=IMAGES.reshape(-1).astype(float).tolist(), datatype="UINT8"),  # 3.0 is 3
    ],
)
def test_parse_accepts(doc: dict[str, Any]) -> None:
    call = parse(doc)
    np.testing.assert_array_equal(call.pixels, IMAGES)
    assert call.pixels.dtype == np.float32 and call.request_id is None
    assert not call.binary_output


def test_parse_binary_tensor_data() -> None:
    for images, datatype in ((IMAGES, "UINT8"), (IMAGES.astype("<f4")[:, None], "FP32")):
        body, length = binary_body(images, datatype, id="7")
        call = parse_infer_request(body, length, 8)
        np.testing.assert_array_equal(call.pixels, IMAGES)
        assert call.request_id == "7"


@pytest.mark.parametrize(
    ("doc", "wants_binary"),
    [
        (request(outputs=[{"name": "probabilities"}]), False),
        (request(outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]), True),
        (request(parameters={"binary_data_output": True}), True),
        (request(parameters={"binary_data_output": False}), False),
    ],
)
def test_parse_binary_output_request(doc: dict[str, Any], wants_binary: bool) -> None:
    assert parse(doc).binary_output is wants_binary


# (case, document or raw body, status, reason, words in the message)
BAD: list[tuple[str, Any, int, str, str]] = [
    ("not JSON", b"{", 400, "invalid_json", "not valid JSON"),
    ("empty", b"", 400, "empty_body", "empty"),
    ("a list", [1, 2], 400, "invalid_request", "JSON list"),
    ("no inputs", {"id": "1"}, 400, "invalid_request", '"inputs" must hold exactly one'),
    ("two inputs", {"inputs": [request()["inputs"][0]] * 2}, 400, "invalid_request", "one"),
    ("wrong name", request(name="input_0"), 400, "invalid_request", "'input_0' is unknown"),
    ("BYTES", request(datatype="BYTES"), 400, "wrong_dtype", "FP32 or UINT8"),
    ("shape not a list", request(shape="3x28x28"), 400, "wrong_shape", "list of sizes"),  # type: ignore[arg-type]
    ("negative size", request(shape=[-1, 1, 28, 28]), 400, "wrong_shape", "list of sizes"),
    ("bool size", request(shape=[True, 28, 28]), 400, "wrong_shape", "list of sizes"),
    ("count mismatch", request(shape=[2, 1, 28, 28]), 400, "wrong_shape", "needs 1568"),
    ("image shape", request(shape=[3, 784]), 400, "wrong_shape", "[N, 28, 28]"),
    ("no data", request(data="abc"), 400, "invalid_request", 'no "data" list'),
    ("strings", request(data=["a"] * 784, shape=[1, 28, 28]), 400, "not_a_number", "non-numbers"),
    ("ragged", request(data=[[1, 2], [3]], shape=[1, 28, 28]), 400, "wrong_shape", "ragged"),
    ("zero-size lie", request(data=[], shape=[0, 10**12, 10**12]), 400, "empty_batch", "no images"),
    ("fractions", request(data=[0.5] * 784, shape=[1, 28, 28]), 400, "not_a_number", "fractions"),
    (
        "out of range",
        request(data=[300] * 784, shape=[1, 28, 28]),
        400,
        "out_of_range",
        "0-255",
    ),
    (
        "too many images",
        request(data=[0] * 784 * 9, shape=[9, 28, 28]),
        413,
        "batch_too_large",
        "at most 8",
    ),
    ("empty batch", request(data=[], shape=[0, 28, 28]), 400, "empty_batch", "no images"),
    ("id a number", request(id=5), 400, "invalid_request", '"id" is a int'),
    (
        "unknown output",
        request(outputs=[{"name": "logits"}]),
        400,
        "invalid_request",
        "'logits' is unknown",
    ),
    ("parameters a list", request(parameters=[1]), 400, "invalid_request", '"parameters"'),
]


@pytest.mark.parametrize(
    ("doc", "status", "reason", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_parse_refuses(doc: Any, status: int, reason: str, words: str) -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InputError) as excinfo:
        parse_infer_request(body, None, 8)
    assert (excinfo.value.status, excinfo.value.reason) == (status, reason)
    assert words in excinfo.value.detail


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda body, n: (body, "abc"), "Inference-Header-Content-Length is 'abc'"),
        (lambda body, n: (body, "²"), "Inference-Header-Content-Length is '²'"),  # fuzz
        (lambda body, n: (body, str(len(body) + 1)), "at most the body's"),
        (lambda body, n: (body[:-1], n), "binary_data_size 784 but 783 bytes"),
        (lambda body, n: (body + b"\0", n), "binary_data_size 784 but 785 bytes"),
    ],
)
def test_parse_refuses_inconsistent_binary_data(mangle: Any, words: str) -> None:
    body, length = mangle(*binary_body(IMAGES[:1]))
    with pytest.raises(InputError) as excinfo:
        parse_infer_request(body, length, 8)
    assert excinfo.value.status == 400 and words in excinfo.value.detail


def test_parse_refuses_binary_data_of_the_wrong_size() -> None:
    body, length = binary_body(IMAGES[:1].astype(np.uint16), "UINT8")  # 2 bytes a value
    with pytest.raises(InputError) as excinfo:
        parse_infer_request(body, length, 8)
    assert excinfo.value.reason == "wrong_shape" and "needs 784" in excinfo.value.detail


def test_request_example_is_accepted() -> None:
    example = V2InferRequest.model_json_schema()["examples"][0]
    assert parse(example).pixels.shape == (1, 28, 28)


# --- the routes in-process -----------------------------------------------------------------


def test_health_and_metadata(api: ApiClient, stub_backend: StubBackend) -> None:
    assert api.get("/v2/health/live").json() == {"live": True}
    assert api.get("/v2/health/ready").json() == {"ready": True}
    server = api.get("/v2").json()
    assert server["name"] == "fmnist" and "binary_tensor_data" in server["extensions"]
    meta = V2ModelMetadata.model_validate(api.get("/v2/models/deeper").json())
    sha = {m["name"]: m["sha256"] for m in stub_backend.model_listing()["models"]}
    assert meta.platform == "onnx" and meta.versions == [sha["deeper"][:12]]
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [
        ("pixels", "FP32", [-1, 1, 28, 28])
    ]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 10])
    ]
    assert api.get("/v2/models/baseline/ready").json() == {"name": "baseline", "ready": True}
    stub_backend.ready = False
    resp = api.get("/v2/health/ready")
    assert (resp.status_code, resp.json()) == (503, {"ready": False})


def test_infer_json(api: ApiClient, stub_backend: StubBackend) -> None:
    resp = api.post("/v2/models/deeper/infer", json=request(id="r1"))
    assert resp.status_code == 200, resp.text
    answer = V2InferResponse.model_validate(resp.json())
    assert (answer.model_name, answer.id) == ("deeper", "r1")
    (output,) = answer.outputs
    assert (output.name, output.datatype, output.shape) == ("probabilities", "FP32", [3, 10])
    expected = stub_backend._answer("deeper", IMAGES.astype(np.float32))
    np.testing.assert_allclose(np.reshape(output.data, (3, 10)), expected)
    assert stub_backend.calls[-1][:2] == ("many", "deeper")


def test_infer_binary_in_and_out(api: ApiClient, stub_backend: StubBackend) -> None:
    body, length = binary_body(IMAGES, parameters={"binary_data_output": True})
    resp = api.post(
        "/v2/models/baseline/infer",
        content=body,
        headers={
            "Inference-Header-Content-Length": length,
            "content-type": "application/octet-stream",
        },
    )
    assert resp.status_code == 200, resp.text
    n = int(resp.headers["inference-header-content-length"])
    header = json.loads(resp.content[:n])
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 3 * 10 * 4} and "data" not in output
    probs = np.frombuffer(resp.content[n:], dtype="<f4").reshape(3, 10)
    np.testing.assert_allclose(probs, stub_backend._answer("baseline", IMAGES))


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("GET", "/v2/models/resnet", {}, 404, "'resnet' is not served"),
        ("GET", "/v2/models/resnet/ready", {}, 404, "'resnet' is not served"),
        ("POST", "/v2/models/resnet/infer", {"json": request()}, 404, "'resnet' is not served"),
        ("POST", "/v2/models/baseline/infer", {"content": b"{"}, 400, "not valid JSON"),
        ("GET", "/v2/models/baseline/infer", {}, 405, "does not accept GET"),
        (
            "POST",
            "/v2/models/baseline/infer",
            {"content": b"\0" * 200_001},
            413,
            "at most 200,000",
        ),
    ],
)
def test_errors_in_the_protocols_shape(
    api: ApiClient, method: str, path: str, kwargs: dict[str, Any], status: int, words: str
) -> None:
    resp = api.request(method, path, **kwargs)
    assert resp.status_code == status
    body = resp.json()
    assert list(body) == ["error"] and words in body["error"]


def test_overloaded_is_503_in_the_protocols_shape(
    api: ApiClient, stub_backend: StubBackend
) -> None:
    from service.batching import Overloaded

    stub_backend.raises = Overloaded("baseline", 256, 1)
    resp = api.post("/v2/models/baseline/infer", json=request())
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert list(resp.json()) == ["error"]


# --- tritonclient against a real server ----------------------------------------------------


@pytest.fixture(scope="module")
def server(onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from loadtests.launch import bentoml_server

    home = tmp_path_factory.mktemp("bentoml-home")
    env = {
        "FMNIST_MODEL_DIR": str(onnx_models["baseline"].parent),
        "FMNIST_WORKERS": "1",
        "FMNIST_MAX_BATCH_SIZE": "16",
        "BENTOML_HOME": str(home),
    }
    with bentoml_server(env, log_path=home / "serve.log") as url:
        yield url


@pytest.mark.slow
def test_tritonclient_against_the_service(server: str, onnx_models: dict[str, Path]) -> None:
    import onnxruntime as ort
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from fmnist.contract import file_sha256

    client = httpclient.InferenceServerClient(server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("deeper")
        meta = client.get_model_metadata("deeper")
        assert meta["platform"] == "onnx"
        assert meta["versions"] == [file_sha256(onnx_models["deeper"])[:12]]
        assert meta["inputs"][0]["name"] == "pixels"
        expected = ort.InferenceSession(str(onnx_models["deeper"])).run(
            ["probabilities"], {"pixels": IMAGES[:, None].astype(np.float32)}
        )[0]
        for datatype, images in (
            ("FP32", IMAGES[:, None].astype(np.float32)),
            ("UINT8", IMAGES),
        ):
            for binary in (False, True):
                tensor = httpclient.InferInput("pixels", list(images.shape), datatype)
                tensor.set_data_from_numpy(images, binary_data=binary)
                wanted = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
                result = client.infer("deeper", [tensor], outputs=[wanted], request_id="9")
                np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
                assert result.get_response()["id"] == "9"
        # The client's defaults: binary in, and (no outputs named) binary out.
        tensor = httpclient.InferInput("pixels", [3, 28, 28], "UINT8")
        tensor.set_data_from_numpy(IMAGES)
        probs = client.infer("deeper", [tensor]).as_numpy("probabilities")
        np.testing.assert_allclose(probs, expected, atol=1e-6)
        with pytest.raises(InferenceServerException, match="'resnet' is not served"):
            client.infer("resnet", [tensor])
        with pytest.raises(InferenceServerException, match="at most 16"):
            big = httpclient.InferInput("pixels", [17, 28, 28], "UINT8")
            big.set_data_from_numpy(np.zeros((17, 28, 28), np.uint8))
            client.infer("deeper", [big])
    finally:
        client.close()
