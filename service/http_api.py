"""The HTTP contract of docs/api.md as a FastAPI app that the BentoML service mounts at ``/``.

    app = create_app()         # in the service: routes reach bentoml.get_current_service()
    app = create_app(backend)  # in tests: any object with the Backend protocol

Routes: ``POST /classify`` (multipart form or a raw image body), ``POST /classify_batch``
(JSON), ``POST /classify_npy`` (multipart .npy), ``GET /models``, the Open Inference
Protocol under ``/v2`` (service/v2.py), ``GET /docs.json``, the OpenAPI document that
BentoML's Swagger UI at ``/`` reads (service/api_spec.py), and the demo page ``/ui``
(service/ui/, a client of this API). Model work goes to the backend,
whose micro-batchers (service/batching.py) merge concurrent requests.

Every client mistake is answered ``{"error": reason, "detail": ...}`` with a 4xx, including
what FastAPI and Starlette would answer in their own shape (404, 405, 422); under ``/v2``
the protocol's ``{"error": message}``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fmnist.dataset import CLASS_NAMES
from service import api_spec, v2
from service.endpoints import (
    Backend,
    BackendSource,
    DirectRoute,
    backend_source,
    contract_error,
    guarded,
    media_type,
    read_body,
    v2_error,
)
from service.schemas import IMAGE_TYPES, NPY_TYPES, BatchAnswer, ClassifyAnswer, ModelListing
from service.ui import add_demo_page
from service.validation import (
    InputError,
    decode_image,
    parse_bool,
    pixels_from_json,
    pixels_from_npy,
)
from service.versions import Target

log = logging.getLogger(__name__)

INLINE_DECODE_BYTES = 64 * 1024  # larger images are decoded off the event loop
# A raw body on /classify: the image types, and octet-stream (the format is read from the
# bytes either way).
RAW_IMAGE_TYPES = frozenset({*IMAGE_TYPES, "image/jpg", "application/octet-stream"})
FORM_FIELDS_LIMIT = 16
# FastAPI's own OpenTelemetry instrumentation (recent versions) would trace every request
# through BentoML's tracer provider; BentoML's tracing (FMNIST_TRACING) is the one in use.
NO_TELEMETRY: dict[str, Any] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}
HTTP_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class _FormParts:
    """python-multipart's parser callbacks for a body already in memory: the file parts'
    bytes and the text fields, by name (the last of a name wins, as in Starlette's form).

    Starlette's ``Request.form`` writes each file part to a spooled temporary file, made
    for uploads of any size; here the body was size-checked and read whole first, so the
    parts are sliced out of it instead. The limits and their messages are Starlette's.
    """

    def __init__(self, file_field: str, max_files: int, max_fields: int) -> None:
        self.file_field = file_field
        self.files: dict[str, bytes] = {}
        self.fields: dict[str, str] = {}
        self.max_files, self.max_fields = max_files, max_fields
        self._file_parts = self._text_parts = 0
        self._header_name = self._header_value = self._disposition = b""
        self._name, self._is_file = "", False
        self._data: list[bytes] = []

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._on_header_name,
            "on_header_value": self._on_header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def malformed(self, reason: str) -> InputError:
        return InputError(
            400,
            "invalid_form",
            f"the multipart body is malformed ({reason}); expected {_form(self.file_field)}",
        )

    def _begin(self) -> None:
        self._disposition, self._data = b"", []

    def _on_header_name(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        options = parse_options_header(self._disposition)[1]
        if b"name" not in options:
            raise self.malformed('The Content-Disposition header field "name" must be provided.')
        self._name, self._is_file = _text(options[b"name"]), b"filename" in options
        if self._is_file:
            self._file_parts += 1
            if self._file_parts > self.max_files:
                raise self.malformed(
                    f"Too many files. Maximum number of files is {self.max_files}."
                )
        else:
            self._text_parts += 1
            if self._text_parts > self.max_fields:
                raise self.malformed(
                    f"Too many fields. Maximum number of fields is {self.max_fields}."
                )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

    def _part_end(self) -> None:
        value = b"".join(self._data)
        if self._is_file:
            self.files[self._name] = value
            self.fields.pop(self._name, None)
        else:
            self.fields[self._name] = _text(value)
            self.files.pop(self._name, None)


def _form(file_field: str) -> str:
    return f"a multipart form with a file field {file_field!r}"


def _text(raw: bytes) -> str:
    """A form's text as UTF-8, or Latin-1 where it is not UTF-8 (as Starlette reads it)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def read_form(request: Request, limit: int, file_field: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body (size-checked first) → the named file's bytes and the text fields."""
    what = _form(file_field)
    body = await read_body(request, limit)
    if not body:
        raise InputError(400, "empty_body", f"the request body is empty; expected {what}")
    form = _FormParts(file_field, max_files=2, max_fields=FORM_FIELDS_LIMIT)
    boundary = parse_options_header(request.headers.get("content-type", ""))[1].get(b"boundary")
    if not boundary:
        raise form.malformed("Missing boundary in multipart.")
    # Without its closing boundary the last part never ends, and the parser would drop it:
    # the answer says what is wrong instead of "missing".
    if b"--" + boundary + b"--" not in body:
        raise InputError(
            400,
            "invalid_form",
            f"the multipart body ends before its closing boundary; expected {what}",
        )
    try:
        parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise form.malformed("Invalid multipart data.") from exc
    if file_field not in form.files:
        got = "a text field" if file_field in form.fields else "no such field"
        raise InputError(
            400,
            "missing_field",
            f"{file_field!r} is missing or not a file ({got}); expected {what}",
        )
    return form.files[file_field], form.fields


# How /classify and /classify_npy name their raw bodies in a 415's detail.
RAW_IMAGE = f"a raw image body ({', '.join(IMAGE_TYPES)})"
RAW_NPY = f"a raw .npy body ({', '.join(NPY_TYPES)})"


async def read_upload(
    request: Request, limit: int, file_field: str, raw_types: frozenset[str], raw_what: str
) -> tuple[bytes, dict[str, str]]:
    """The uploaded file's bytes and the form's text fields: a multipart form with
    ``file_field``, or the raw body when its content type is one of ``raw_types`` (no
    fields); any other content type is a 415 that names both."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await read_form(request, limit, file_field)
    if kind in raw_types:
        return await read_body(request, limit), {}
    raise InputError(
        415,
        "wrong_content_type",
        f"content type is {kind or 'none'}; expected multipart/form-data with a file field "
        f"{file_field!r}, or {raw_what}",
    )


def _option(fields: dict[str, str], request: Request, name: str) -> str | None:
    """A form field, else the query parameter of that name."""
    if name in fields:
        return fields[name]
    return request.query_params.get(name) if request.scope.get("query_string") else None


def single_answer(target: Target, probabilities: np.ndarray) -> dict[str, Any]:
    """docs/api.md's answer for one image; its numbers stay float32 (see JSONAnswer)."""
    probs = probabilities.reshape(-1)
    index = int(np.argmax(probs))
    return {
        "model": target.name,
        "version": target.version,
        "class_index": index,
        "class_name": CLASS_NAMES[index],
        "confidence": probs[index],
        "probabilities": dict(zip(CLASS_NAMES, probs, strict=True)),
    }


def batch_answer(target: Target, probabilities: np.ndarray) -> dict[str, Any]:
    """docs/api.md's answer for N images, numpy arrays for JSONAnswer to encode."""
    return {
        "model": target.name,
        "version": target.version,
        "count": int(probabilities.shape[0]),
        "class_names": list(CLASS_NAMES),
        "class_index": probabilities.argmax(axis=1),
        "confidence": probabilities.max(axis=1),
        "probabilities": probabilities,
    }


async def classify(request: Request, backend: Backend) -> dict[str, Any]:
    """One image: a multipart form (`image`, `model`, `invert`) or a raw image body
    (`Content-Type: image/png|jpeg|webp|bmp`, `model` and `invert` as query parameters)."""
    data, fields = await read_upload(
        request, backend.settings.max_body_bytes, "image", RAW_IMAGE_TYPES, RAW_IMAGE
    )
    model = backend.resolve(_option(fields, request, "model"))
    invert = parse_bool("invert", _option(fields, request, "invert"))
    if len(data) <= INLINE_DECODE_BYTES:
        pixels = decode_image(data, invert)
    else:
        pixels = await anyio.to_thread.run_sync(decode_image, data, invert)
    return single_answer(model, await backend.classify_one(model, pixels))


async def classify_batch(request: Request, backend: Backend) -> dict[str, Any]:
    """A batch of images as JSON `{"pixels": [N][28][28], "model": optional}`."""
    settings = backend.settings
    got = media_type(request) or "none"
    if got != "application/json":
        raise InputError(
            415,
            "wrong_content_type",
            f'content type is {got}; expected application/json (a JSON body {{"pixels": '
            "[N][28][28]}})",
        )
    body = await read_body(request, settings.max_body_bytes)
    pixels, raw_model = await anyio.to_thread.run_sync(
        pixels_from_json, body, settings.max_batch_size
    )
    model = backend.resolve(raw_model)
    return batch_answer(model, await backend.classify_many(model, pixels))


async def classify_npy(request: Request, backend: Backend) -> dict[str, Any]:
    """A batch of images as a .npy of uint8 [N, 28, 28]: a multipart form (`array`, `model`)
    or the raw body (`Content-Type: application/x-npy`, `model` as a query parameter)."""
    settings = backend.settings
    data, fields = await read_upload(
        request, settings.max_body_bytes, "array", frozenset(NPY_TYPES), RAW_NPY
    )
    if not data and media_type(request) in NPY_TYPES:  # a form's empty file: pixels_from_npy
        raise InputError(
            400, "empty_body", "the request body is empty; expected the bytes of a .npy file"
        )
    model = backend.resolve(_option(fields, request, "model"))
    pixels = pixels_from_npy(data, settings.max_batch_size)
    return batch_answer(model, await backend.classify_many(model, pixels))


async def list_models(request: Request, backend: Backend) -> dict[str, Any]:
    """Exactly the served models, with their ONNX file's facts."""
    return backend.model_listing()


def _error_mapping(app: FastAPI) -> None:
    """FastAPI's and Starlette's own failures in the contract's shapes."""

    def render(request: Request) -> Any:
        return v2_error if request.url.path.startswith(v2.PREFIX) else contract_error

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reason = HTTP_REASONS.get(exc.status_code, "http_error")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = f"{request.url.path} does not accept {request.method} (expected {allowed})"
        return render(request)(exc.status_code, reason, detail, exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return render(request)(422, "validation_error", "; ".join(parts) or "invalid request")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return render(request)(500, "internal_error", "unexpected server error; see the server log")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


def create_app(backend: Backend | None = None) -> FastAPI:
    """The public API; ``backend`` defaults to this worker's BentoML service instance."""
    backend_of: BackendSource = backend_source(backend)
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:  # FastAPI's native OpenTelemetry
        options["telemetry"] = NO_TELEMETRY
    app = FastAPI(
        title=api_spec.TITLE,
        version=api_spec.package_version(),
        openapi_url=None,  # /docs.json below is the document (BentoML's page reads it)
        docs_url=None,
        redoc_url=None,
        **options,
    )
    app.router.route_class = DirectRoute
    _error_mapping(app)
    errors = api_spec.error_responses
    for path, handler, answer, doc in (
        ("/classify", classify, ClassifyAnswer, api_spec.CLASSIFY_DOC),
        ("/classify_batch", classify_batch, BatchAnswer, api_spec.CLASSIFY_BATCH_DOC),
        ("/classify_npy", classify_npy, BatchAnswer, api_spec.CLASSIFY_NPY_DOC),
    ):
        app.add_api_route(
            path,
            guarded(handler, backend_of),
            methods=["POST"],
            operation_id=handler.__name__,
            summary=doc.summary,
            description=inspect.cleandoc(handler.__doc__ or ""),
            tags=[api_spec.TAG_API],
            response_model=None,
            responses={200: {"model": answer}, **errors(400, 404, 413, 415, 503)},
            openapi_extra=doc.extra,
        )
    app.add_api_route(
        "/models",
        guarded(list_models, backend_of),
        methods=["GET"],
        operation_id="list_models",
        summary="The served models",
        description=list_models.__doc__,
        tags=[api_spec.TAG_API],
        response_model=None,
        responses={200: {"model": ModelListing}},
    )
    v2.add_routes(app, backend_of, guarded)
    spec: list[dict[str, Any]] = []

    async def openapi_document(request: Request) -> Response:
        if not spec:
            backend = backend_of()
            listing = backend.model_listing()
            spec.append(api_spec.build_spec(app, listing, backend.settings.max_batch_size))
        return JSONResponse(spec[0])

    app.add_api_route("/docs.json", openapi_document, methods=["GET"], include_in_schema=False)
    add_demo_page(app)
    return app
