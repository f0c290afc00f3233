"""What every route of the mounted app shares: the backend it serves from, size-checked body
reading, and the wrapper that turns every failure into an answer.

The routes run on FastAPI for the OpenAPI spec, but on the request path they are plain
``async def route(request) -> Response`` functions (:class:`DirectRoute`): no dependency
injection, no body or response validation per request. Each parses its own body
(service/validation.py, service/v2.py) and returns a JSON answer it built, so that a single
``POST /classify`` costs the server what it did on a bare Starlette app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import numpy as np
import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.batching import Overloaded
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings
from service.validation import InputError
from service.versions import Target

log = logging.getLogger(__name__)
# Where read_body leaves the size of the body it read, for guarded's fmnist_request_body_bytes.
BODY_BYTES_KEY = "fmnist.body_bytes"


class Backend(Protocol):
    """What the routes need from the running service instance (service.service)."""

    settings: ServiceSettings
    worker: str  # this worker's index (the label of fmnist_worker_requests_total)
    metrics: ServiceMetrics

    @property
    def served_models(self) -> tuple[str, ...]: ...  # the names a request may use

    @property
    def default_model(self) -> str: ...  # what a request that names no model gets

    def resolve(self, raw: object) -> Target:
        """A request's ``model`` (``name``, ``name@alias``, ``name@version``) → the version
        that answers it; InputError 404 ``unknown_model`` when it is not served."""
        ...

    async def classify_one(self, target: Target, pixels: np.ndarray) -> np.ndarray: ...

    async def classify_many(self, target: Target, pixels: np.ndarray) -> np.ndarray: ...

    def model_listing(self) -> dict[str, Any]: ...

    def __is_ready__(self) -> bool: ...


BackendSource = Callable[[], Backend]


def backend_source(backend: Backend | None) -> BackendSource:
    """``backend`` itself, or (None) the BentoML service instance of this worker.

    The instance exists from the worker's start-up on and never changes, so it is looked
    up on the first request and kept.
    """
    if backend is not None:
        return lambda: backend
    found: list[Backend] = []

    def current() -> Backend:
        if not found:
            import bentoml

            found.append(bentoml.get_current_service())
        return found[0]

    return current


class DirectRoute(APIRoute):
    """An APIRoute whose request handler is its endpoint, called with the request alone.

    Documented like any FastAPI route (``responses``, ``openapi_extra``), served like a
    Starlette route. FastAPI's documented way to customise route handling.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def contract_error(
    status: int, reason: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """docs/api.md's error body."""
    return JSONResponse({"error": reason, "detail": detail}, status_code=status, headers=headers)


def v2_error(
    status: int, reason: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The Open Inference Protocol's error body: ``{"error": message}``."""
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


ErrorRenderer = Callable[..., JSONResponse]
Handler = Callable[[Request, Backend], Awaitable[dict[str, Any] | Response]]


class JSONAnswer(JSONResponse):
    """A handler's dict as compact JSON, encoded by orjson (Rust).

    numpy arrays and scalars go in as they are: a float32 is printed as the shortest
    decimal that reads back as the same float32 (``0.99999976``, not the float64 form
    ``0.9999997615814209``), so a 64-image answer is ~9 KB instead of ~15 KB and is
    encoded without building 640 Python floats. Answers carry only finite numbers:
    ``OnnxModel.predict`` refuses NaN and infinity before they reach a handler.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def guarded(
    handler: Handler, backend_of: BackendSource, render: ErrorRenderer = contract_error
) -> Callable[[Request], Awaitable[Response]]:
    """Run a handler: its dict as JSON; InputError → its 4xx (counted by reason);
    Overloaded → 503 with Retry-After; anything else → a JSON 500, logged."""

    async def endpoint(request: Request) -> Response:
        backend = backend_of()
        metrics = backend.metrics
        metrics.worker_requests.labels(backend.worker).inc()
        try:
            answer = await handler(request, backend)
        except InputError as exc:
            metrics.reject(exc.reason)
            return render(exc.status, exc.reason, exc.detail)
        except Overloaded as exc:
            metrics.shed.labels(exc.model).inc()
            return render(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after_s)})
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return render(500, "internal_error", "unexpected server error; see the server log")
        finally:
            size = request.scope.get(BODY_BYTES_KEY)
            if size is not None:  # labelled by the route's template: a bounded set of paths
                metrics.observe_body(getattr(request.scope.get("route"), "path", "other"), size)
        return answer if isinstance(answer, Response) else JSONAnswer(answer)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        request.scope[BODY_BYTES_KEY] = int(declared)
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
            request.scope[BODY_BYTES_KEY] = size
            raise InputError(
                413,
                "body_too_large",
                f"the body is over {limit:,} bytes; at most {limit:,} are accepted",
            )
        chunks.append(chunk)
    request.scope[BODY_BYTES_KEY] = size
    return b"".join(chunks)
