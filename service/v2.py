"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API) beside the project's API.

    GET  /v2                          server metadata
    GET  /v2/health/live              200 {"live": true}
    GET  /v2/health/ready             200 {"ready": true} once every model is loaded
    GET  /v2/models/{name}            model metadata: platform "onnx", inputs, outputs
    GET  /v2/models/{name}/ready      {"name", "ready"}
    POST /v2/models/{name}/infer      JSON tensors, or the binary tensor data extension
    .../v2/models/{name}/versions/{version}[/ready|/infer]   the same, for one version
                                      (a version, or an alias: production, candidate)

Without a version a model means its ``production`` version (service/versions.py).

Each served model takes one input named as in the ONNX contract (``pixels``): FP32 or
UINT8, shape [N, 1, 28, 28] or [N, 28, 28], values 0-255, ``data`` flat (row-major) or
nested, or its bytes after the JSON header (``parameters.binary_data_size`` and the
``Inference-Header-Content-Length`` header). It answers one output, ``probabilities`` FP32
[N, 10], as JSON ``data`` or, when asked for (``binary_data`` on the output or
``binary_data_output`` on the request), as little-endian bytes after the JSON header.

Requests go through the project's validation (check_batch: shape, batch limit, range) and
the model's micro-batcher (``backend.classify_many``), like ``/classify_batch``. Errors are
the protocol's ``{"error": message}`` with the project's status codes (400, 404, 413, 503).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fmnist.contract import INPUT_NAME, PROBABILITIES_NAME
from fmnist.dataset import CLASS_NAMES
from service import api_spec
from service.endpoints import Backend, BackendSource, JSONAnswer, read_body, v2_error
from service.schemas import (
    V2InferResponse,
    V2ModelMetadata,
    V2ModelReady,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
)
from service.validation import InputError, check_batch, check_shape, load_json
from service.versions import Target

PREFIX = "/v2"
SERVER_NAME = "fmnist"
EXTENSIONS = ["binary_tensor_data"]
DATATYPES: dict[str, type[np.generic]] = {"FP32": np.float32, "UINT8": np.uint8}
HEADER_LENGTH = api_spec.V2_HEADER_LENGTH  # Inference-Header-Content-Length
EXPECTED = (
    f'{{"inputs": [{{"name": "{INPUT_NAME}", "datatype": "FP32" or "UINT8", '
    '"shape": [N, 1, 28, 28], "data": [...]}]}'
)
SOURCE = f"input {INPUT_NAME!r}"


@dataclass(frozen=True)
class InferCall:
    """A checked inference request."""

    pixels: np.ndarray  # float32 (N, 28, 28), 0-255
    request_id: str | None
    binary_output: bool


def _bad(detail: str, reason: str = "invalid_request", status: int = 400) -> InputError:
    return InputError(status, reason, detail)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data): the whole body is JSON without the header."""
    if header_length is None:
        return body, b""
    length = header_length.strip()
    if not (length.isascii() and length.isdigit()) or not 0 < int(length) <= len(body):
        raise _bad(
            f"{HEADER_LENGTH} is {header_length!r} for a {len(body)}-byte "
            "body; expected the length of the JSON part, at most the body's"
        )
    return body[: int(length)], body[int(length) :]


def _parameters(owner: dict[str, Any], what: str) -> dict[str, Any]:
    params = owner.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise _bad(f'"parameters" of {what} is a {type(params).__name__}; expected an object')
    return params


def _tensor(doc: dict[str, Any], binary: bytes, max_batch: int) -> np.ndarray:
    """The one input tensor, in its declared shape (values not checked yet)."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad(f'"inputs" must hold exactly one tensor object; expected {EXPECTED}')
    tensor = inputs[0]
    name = tensor.get("name")
    if name != INPUT_NAME:
        raise _bad(f"input {name!r} is unknown; the model takes one input {INPUT_NAME!r}")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise _bad(f"{SOURCE} has datatype {datatype!r}; expected FP32 or UINT8", "wrong_dtype")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise _bad(
            f"{SOURCE} has shape {shape!r}; expected a list of sizes like [N, 1, 28, 28]",
            "wrong_shape",
        )
    check_shape(tuple(shape), max_batch, SOURCE)  # before any array is made from it
    count = math.prod(shape)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    size = _parameters(tensor, SOURCE).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != len(binary):
            raise _bad(
                f"{SOURCE} has binary_data_size {size!r} but {len(binary)} bytes follow the "
                "JSON header; expected them to be equal"
            )
        if size != count * dtype.itemsize:
            raise _bad(
                f"{SOURCE} holds {size} bytes; shape {shape} of {datatype} needs "
                f"{count * dtype.itemsize}",
                "wrong_shape",
            )
        return np.frombuffer(binary, dtype=dtype).reshape(shape)
    if binary:
        raise _bad(
            f"{len(binary)} bytes follow the JSON header but no input declares "
            "binary_data_size; expected the sizes to add up"
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise _bad(f'{SOURCE} has no "data" list (and no binary_data_size); expected {EXPECTED}')
    try:
        array = np.asarray(data)
    except ValueError as exc:
        raise _bad(
            f'"data" of {SOURCE} is ragged; expected a flat list or nesting of its shape',
            "wrong_shape",
        ) from exc
    if array.dtype.kind not in "iuf":
        raise _bad(
            f'"data" of {SOURCE} holds non-numbers (or integers beyond 64 bits); expected '
            "numbers 0-255",
            "not_a_number",
        )
    if array.size != count:
        raise _bad(
            f'"data" of {SOURCE} holds {array.size} values; shape {shape} needs {count}',
            "wrong_shape",
        )
    if datatype == "UINT8" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise _bad(f'"data" of {SOURCE} is UINT8 but holds fractions', "not_a_number")
    return array.reshape(shape)


def _binary_output(doc: dict[str, Any]) -> bool:
    wanted = _parameters(doc, "the request").get("binary_data_output") is True
    outputs = doc.get("outputs")
    if outputs is None:
        return wanted
    if not isinstance(outputs, list):
        raise _bad(f'"outputs" is a {type(outputs).__name__}; expected a list')
    for output in outputs:
        name = output.get("name") if isinstance(output, dict) else None
        if name != PROBABILITIES_NAME:
            raise _bad(
                f"output {name!r} is unknown; the model answers one output {PROBABILITIES_NAME!r}"
            )
        wanted = _parameters(output, f"output {name!r}").get("binary_data") is True
    return wanted


def parse_infer_request(body: bytes, header_length: str | None, max_batch: int) -> InferCall:
    """An inference request's body (and its Inference-Header-Content-Length) → InferCall."""
    header, binary = _split(body, header_length)
    doc = load_json(header, EXPECTED)
    if not isinstance(doc, dict):
        raise _bad(f"the body is a JSON {type(doc).__name__}; expected {EXPECTED}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad(f'"id" is a {type(request_id).__name__}; expected a string')
    pixels = check_batch(_tensor(doc, binary, max_batch), max_batch, SOURCE)
    return InferCall(pixels, request_id, _binary_output(doc))


def infer_answer(model: str, version: str, call: InferCall, probabilities: np.ndarray) -> Response:
    """The inference response: JSON ``data``, or the bytes after a JSON header."""
    output: dict[str, Any] = {
        "name": PROBABILITIES_NAME,
        "datatype": "FP32",
        "shape": [int(probabilities.shape[0]), len(CLASS_NAMES)],
    }
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": [output]}
    if call.request_id is not None:
        answer["id"] = call.request_id
    if not call.binary_output:
        output["data"] = probabilities.reshape(-1)  # float32, printed as such (JSONAnswer)
        return JSONAnswer(answer)
    data = np.ascontiguousarray(probabilities, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps(answer)  # compact, as every other answer (service/endpoints.py)
    return Response(
        header + data,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def model_metadata(name: str, versions: list[str]) -> dict[str, Any]:
    """A served model in the protocol's terms: its versions (production's first)."""
    return {
        "name": name,
        "versions": versions,
        "platform": "onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [
            {"name": PROBABILITIES_NAME, "datatype": "FP32", "shape": [-1, len(CLASS_NAMES)]}
        ],
    }


def _target(backend: Backend, request: Request) -> Target:
    """The path's model, and its version when the path names one (a version or an alias);
    unknown → 404 unknown_model."""
    name = request.path_params["name"]
    version = request.path_params.get("version")
    return backend.resolve(name if version is None else f"{name}@{version}")


def _versions(backend: Backend, name: str) -> list[str]:
    return [m["version"] for m in backend.model_listing()["models"] if m["name"] == name]


def _openapi_extra(path: str, infer: bool) -> dict[str, Any] | None:
    """The path parameters (the routes read them themselves), and the infer request: its body
    and the binary extension's header."""
    extra: dict[str, Any] = dict(api_spec.V2_INFER_EXTRA) if infer else {}
    parameters: list[dict[str, Any]] = []
    if "{name}" in path:
        parameters.append(
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "a served model (GET /models): its name (its production "
                "version), name@alias or name@version; blank means the default model",
            }
        )
    if "{version}" in path:
        parameters.append(
            {
                "name": "version",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "one of the model's versions, or an alias (production, "
                "candidate, previous)",
            }
        )
    if infer:
        parameters.append(api_spec.V2_HEADER_LENGTH_PARAMETER)
    if parameters:
        extra["parameters"] = parameters
    return extra or None


def add_routes(app: FastAPI, backend_of: BackendSource, guarded: Callable[..., Any]) -> None:
    """The protocol's routes on ``app``, each run by ``guarded`` with the protocol's errors."""

    async def server_metadata(request: Request, backend: Backend) -> dict[str, Any]:
        return {
            "name": SERVER_NAME,
            "version": api_spec.package_version(),
            "extensions": EXTENSIONS,
        }

    async def server_live(request: Request, backend: Backend) -> dict[str, Any]:
        return {"live": True}

    async def server_ready(request: Request, backend: Backend) -> Response:
        ready = bool(backend.__is_ready__())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def get_model_metadata(request: Request, backend: Backend) -> dict[str, Any]:
        target = _target(backend, request)
        versions = _versions(backend, target.name)
        if "version" in request.path_params:
            versions = [target.version]
        return model_metadata(target.name, versions)

    async def model_ready(request: Request, backend: Backend) -> dict[str, Any]:
        target = _target(backend, request)
        return {"name": target.name, "ready": bool(backend.__is_ready__())}

    async def infer(request: Request, backend: Backend) -> Response:
        model = _target(backend, request)
        settings = backend.settings
        body = await read_body(request, settings.max_body_bytes)
        call = parse_infer_request(
            body, request.headers.get(HEADER_LENGTH), settings.max_batch_size
        )
        probabilities = await backend.classify_many(model, call.pixels)
        return infer_answer(model.name, model.version, call, probabilities)

    errors = api_spec.v2_error_responses
    routes: list[tuple[str, str, Callable[..., Any], Any, str, dict[int | str, Any]]] = [
        ("GET", "", server_metadata, V2ServerMetadata, "Server metadata", {}),
        ("GET", "/health/live", server_live, V2ServerLive, "Server liveness", {}),
        ("GET", "/health/ready", server_ready, V2ServerReady, "Server readiness", errors(503)),
        (
            "GET",
            "/models/{name}",
            get_model_metadata,
            V2ModelMetadata,
            "Model metadata",
            errors(404),
        ),
        ("GET", "/models/{name}/ready", model_ready, V2ModelReady, "Model readiness", errors(404)),
        (
            "POST",
            "/models/{name}/infer",
            infer,
            V2InferResponse,
            "Inference",
            errors(400, 404, 413, 503),
        ),
    ]
    for path, handler, answer, summary, failures in [
        (r[1], r[2], r[3], r[4], r[5]) for r in routes if r[1].startswith("/models/")
    ]:
        routes.append(
            (
                "POST" if handler is infer else "GET",
                path.replace("/models/{name}", "/models/{name}/versions/{version}"),
                handler,
                answer,
                f"{summary} of one version",
                failures,
            )
        )
    for method, path, handler, answer, summary, failures in routes:
        app.add_api_route(
            PREFIX + path,
            guarded(handler, backend_of, v2_error),
            methods=[method],
            operation_id=f"v2_{handler.__name__}" + ("_version" if "{version}" in path else ""),
            summary=summary,
            tags=[api_spec.TAG_V2],
            response_model=None,
            responses={
                200: {"model": answer, **(api_spec.V2_INFER_ANSWER if handler is infer else {})},
                **failures,
            },
            openapi_extra=_openapi_extra(path, handler is infer),
        )
