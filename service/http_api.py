"""The HTTP contract of docs/api.md as a Starlette app that the BentoML service mounts.

BentoML's own API layer answers malformed input with its own error shapes (and a 500
for an unreadable image), so the public endpoints parse the raw request themselves and
answer every client mistake with ``{"error": reason, "detail": ...}`` and a 4xx. Model
work goes back to the service (:class:`Backend`), whose micro-batchers (service/batching.py)
merge concurrent requests; a full queue answers 503 ``overloaded`` with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fmnist.dataset import CLASS_NAMES
from service.batching import Overloaded
from service.metrics import service_metrics
from service.settings import ServiceSettings
from service.validation import (
    InputError,
    decode_image,
    parse_bool,
    pixels_from_json,
    pixels_from_npy,
    resolve_model,
)

log = logging.getLogger(__name__)

INLINE_DECODE_BYTES = 64 * 1024  # larger images are decoded off the event loop


class Backend(Protocol):
    """What the routes need from the running service instance."""

    settings: ServiceSettings
    served_models: tuple[str, ...]  # what a request may name; unknown_model lists them
    default_model: str  # what a request that names no model gets
    worker: str  # this worker's index (the label of fmnist_worker_requests_total)

    async def classify_one(self, model: str, pixels: np.ndarray) -> np.ndarray: ...

    async def classify_many(self, model: str, pixels: np.ndarray) -> np.ndarray: ...

    def model_listing(self) -> dict[str, Any]: ...


def _backend() -> Backend:
    import bentoml

    return bentoml.get_current_service()


def error_response(
    status: int, reason: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputError(
            413,
            "body_too_large",
            f"the body is {int(declared):,} bytes; at most {limit:,} are accepted",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(
                413,
                "body_too_large",
                f"the body is over {limit:,} bytes; at most {limit:,} are accepted",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _require_media_type(request: Request, expected: str, what: str) -> None:
    got = _media_type(request) or "none"
    if got != expected:
        raise InputError(
            415, "wrong_content_type", f"content type is {got}; expected {expected} ({what})"
        )


async def read_form(request: Request, limit: int, file_field: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body (size-checked first) → the named file's bytes and the text fields."""
    what = f"a multipart form with a file field {file_field!r}"
    _require_media_type(request, "multipart/form-data", what)
    body = await read_body(request, limit)
    if not body:
        raise InputError(400, "empty_body", f"the request body is empty; expected {what}")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=2, max_fields=16)
    except HTTPException as exc:
        raise InputError(
            400, "invalid_form", f"the multipart body is malformed ({exc.detail}); expected {what}"
        ) from exc
    upload = form.get(file_field)
    if not isinstance(upload, UploadFile):
        got = "a text field" if upload is not None else "no such field"
        raise InputError(
            400,
            "missing_field",
            f"{file_field!r} is missing or not a file ({got}); expected {what}",
        )
    data = await upload.read()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    await form.close()
    return data, fields


def single_answer(model: str, probabilities: np.ndarray) -> dict[str, Any]:
    probs = probabilities.reshape(-1).tolist()
    index = int(np.argmax(probabilities))
    return {
        "model": model,
        "class_index": index,
        "class_name": CLASS_NAMES[index],
        "confidence": probs[index],
        "probabilities": dict(zip(CLASS_NAMES, probs, strict=True)),
    }


def batch_answer(model: str, probabilities: np.ndarray) -> dict[str, Any]:
    return {
        "model": model,
        "count": int(probabilities.shape[0]),
        "class_names": list(CLASS_NAMES),
        "class_index": probabilities.argmax(axis=1).tolist(),
        "confidence": probabilities.max(axis=1).tolist(),
        "probabilities": probabilities.tolist(),
    }


Handler = Callable[[Request, Backend], Awaitable[dict[str, Any]]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a handler; InputError → its 4xx (counted by reason), anything else → JSON 500."""

    async def run(request: Request) -> Response:
        backend = _backend()
        metrics = service_metrics()
        metrics.worker_requests.labels(backend.worker).inc()
        try:
            return JSONResponse(await handler(request, backend))
        except InputError as exc:
            metrics.reject(exc.reason)
            return error_response(exc.status, exc.reason, exc.detail)
        except Overloaded as exc:
            metrics.shed.labels(exc.model).inc()
            return error_response(
                503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after_s)}
            )
        except Exception:
            log.exception("unexpected error on %s", request.url.path)
            return error_response(
                500, "internal_error", "unexpected server error; see the server log"
            )

    return run


async def classify(request: Request, backend: Backend) -> dict[str, Any]:
    settings = backend.settings
    data, fields = await read_form(request, settings.max_body_bytes, "image")
    model = resolve_model(fields.get("model"), backend.default_model, backend.served_models)
    invert = parse_bool("invert", fields.get("invert"))
    if len(data) <= INLINE_DECODE_BYTES:
        pixels = decode_image(data, invert)
    else:
        pixels = await anyio.to_thread.run_sync(decode_image, data, invert)
    return single_answer(model, await backend.classify_one(model, pixels))


async def classify_batch(request: Request, backend: Backend) -> dict[str, Any]:
    settings = backend.settings
    _require_media_type(request, "application/json", 'a JSON body {"pixels": [N][28][28]}')
    body = await read_body(request, settings.max_body_bytes)
    pixels, raw_model = await anyio.to_thread.run_sync(
        pixels_from_json, body, settings.max_batch_size
    )
    model = resolve_model(raw_model, backend.default_model, backend.served_models)
    return batch_answer(model, await backend.classify_many(model, pixels))


async def classify_npy(request: Request, backend: Backend) -> dict[str, Any]:
    settings = backend.settings
    data, fields = await read_form(request, settings.max_body_bytes, "array")
    model = resolve_model(fields.get("model"), backend.default_model, backend.served_models)
    pixels = pixels_from_npy(data, settings.max_batch_size)
    return batch_answer(model, await backend.classify_many(model, pixels))


async def list_models(request: Request, backend: Backend) -> dict[str, Any]:
    return backend.model_listing()


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/classify", endpoint(classify), methods=["POST"]),
            Route("/classify_batch", endpoint(classify_batch), methods=["POST"]),
            Route("/classify_npy", endpoint(classify_npy), methods=["POST"]),
            Route("/models", endpoint(list_models), methods=["GET"]),
        ]
    )
