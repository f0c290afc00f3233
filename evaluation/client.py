"""HTTP client for the classification service (contract: docs/api.md).

    async with ServiceClient("http://127.0.0.1:3000") as client:
        listing = await client.list_models()
        served = await client.predict(images, "baseline", batch_size=500)

The test set travels as ``.npy`` batches (``POST /classify_npy``) with a few requests in
flight at once over reused connections. Connection errors, timeouts and 502/503/504 are
retried with exponential backoff, each retry logged as a WARNING (what failed, when the
next try is), within a bounded number of tries and a bounded time per request
(:class:`RetryPolicy`), then :class:`ServiceUnavailable` says so: a service that accepts
connections but never answers is given up on after ``RetryPolicy.deadline`` seconds. Any
other 4xx/5xx stops at once with :class:`ServiceError` carrying the server's ``error`` code
and ``detail``. Answers are checked against the contract before use, so a
changed class order or a short answer can never be scored silently.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import numpy as np
from tqdm import tqdm

from fmnist.contract import KEY_TEMPERATURE, KEY_TRAINING_CONFIG
from fmnist.dataset import CLASS_NAMES, NUM_CLASSES

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})


class ServiceError(RuntimeError):
    """The service answered with an error, or with something the contract does not allow."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class ServiceUnavailable(ServiceError):
    """The service could not be reached (or stayed overloaded) after every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries and ``deadline`` seconds per request, tries and waits
    included; waits ``backoff * 2**i`` seconds between tries (at most ``max_backoff``)."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    deadline: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2**attempt)


@dataclass(frozen=True)
class ServedModel:
    """One entry of ``GET /models``."""

    name: str
    parameters: int | None
    test_accuracy: float | None
    val_accuracy: float | None
    sha256: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def metadata(self) -> dict[str, Any]:
        """The ONNX file's metadata as the service lists it (empty when it lists none)."""
        value = self.raw.get("metadata")
        return value if isinstance(value, dict) else {}

    @property
    def trained_epochs(self) -> int | None:
        """Epochs from the training_config metadata (a dict or a JSON string), if any."""
        config = self.metadata.get(KEY_TRAINING_CONFIG)
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except ValueError:
                return None
        epochs = config.get("epochs") if isinstance(config, dict) else None
        return epochs if isinstance(epochs, int) else None

    @property
    def temperature(self) -> float | None:
        """The softmax temperature folded into the graph (the improved recipe's), if any."""
        return _optional_float(self.metadata.get(KEY_TEMPERATURE))


@dataclass(frozen=True)
class ModelListing:
    default: str | None
    models: dict[str, ServedModel]  # by every name a request may use (name, name@alias, ...)
    names: tuple[str, ...] = ()  # the served names, each meaning its production version


@dataclass(frozen=True)
class ServedPredictions:
    """What the service answered for a whole image set, in input order."""

    model: str
    class_index: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float64
    probabilities: np.ndarray  # (N, 10) float64
    seconds: float  # wall time for the whole set, retries included
    requests: int

    @property
    def images_per_second(self) -> float:
        return len(self.class_index) / self.seconds if self.seconds > 0 else float("inf")


def encode_npy(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
    return buf.getvalue()


def _optional_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_listing(body: Any) -> ModelListing:
    if not isinstance(body, dict) or not isinstance(body.get("models"), list):
        raise ServiceError(
            f"GET /models: expected {{'default', 'models': [...]}}, got {body!r:.200}"
        )
    models: dict[str, ServedModel] = {}
    for entry in body["models"]:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ServiceError(f"GET /models: model entry without a name: {entry!r:.200}")
        name = str(entry["name"])
        aliases = entry.get("aliases")
        aliases = [str(a) for a in aliases] if isinstance(aliases, list) else []
        # What a request may name: the bare name means its production version (listed
        # first), name@<version> and name@<alias> (service/versions.py) the one version.
        keys = [f"{name}@{a}" for a in aliases]
        if entry.get("version"):
            keys.append(f"{name}@{entry['version']}")
        if name not in models:
            keys.append(name)
        for key in keys:
            models[key] = ServedModel(
                name=key,
                parameters=_optional_int(entry.get("parameters")),
                test_accuracy=_optional_float(entry.get("test_accuracy")),
                val_accuracy=_optional_float(entry.get("val_accuracy")),
                sha256=entry.get("sha256"),
                raw=entry,
            )
    names = tuple(dict.fromkeys(str(e["name"]) for e in body["models"]))
    return ModelListing(default=body.get("default"), models=models, names=names)


def parse_batch_answer(body: Any, count: int, model: str) -> tuple[np.ndarray, ...]:
    """(class_index, confidence, probabilities) of one batch answer, checked."""
    where = f"POST /classify_npy ({model}, {count} images)"
    if not isinstance(body, dict):
        raise ServiceError(f"{where}: answer is not a JSON object: {body!r:.200}")
    missing = {"class_names", "class_index", "confidence", "probabilities"} - body.keys()
    if missing:
        raise ServiceError(f"{where}: answer lacks {', '.join(sorted(missing))}")
    if list(body["class_names"]) != list(CLASS_NAMES):
        # Scoring against the wrong label order would be silently meaningless.
        raise ServiceError(f"{where}: class_names {body['class_names']} differ from {CLASS_NAMES}")
    name = model.partition("@")[0]  # name@alias and name@version are answered as name
    if body.get("model", name) != name:
        raise ServiceError(f"{where}: answered by model {body['model']!r}")
    try:
        index = np.asarray(body["class_index"], dtype=np.int64)
        # The numbers are the model's float32s in their shortest form (docs/api.md): read
        # as float32 they are its output bit for bit, then widened for the statistics.
        confidence = np.asarray(body["confidence"], dtype=np.float32).astype(np.float64)
        probs = np.asarray(body["probabilities"], dtype=np.float32).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"{where}: non-numeric predictions ({exc})") from exc
    expected = ((count,), (count,), (count, NUM_CLASSES))
    if (index.shape, confidence.shape, probs.shape) != expected:
        raise ServiceError(
            f"{where}: shapes class_index {index.shape}, confidence {confidence.shape}, "
            f"probabilities {probs.shape}; expected {expected}"
        )
    return index, confidence, probs


class ServiceClient:
    """Async client for one service; ``transport`` lets tests swap the network out."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=_timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call with bounded retries; returns only a 2xx response.

        Each try may take ``timeout`` seconds, never past the policy's deadline; a try that
        could not start before the deadline is not made.
        """
        began = time.monotonic()
        give_up_at = began + self.retry.deadline
        last, tries = "", 0
        for attempt in range(self.retry.attempts):
            limit = max(0.01, min(self.timeout, give_up_at - time.monotonic()))
            asked_wait = 0.0
            tries += 1
            try:
                # asyncio.timeout bounds the whole try; httpx's only each read or write.
                async with asyncio.timeout(limit):
                    response = await self._http.request(
                        method, path, timeout=_timeout(limit), **kwargs
                    )
            except (TimeoutError, httpx.TimeoutException):
                last = f"no answer within {limit:.1f} s"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise _error_from(response, method, path)
                last = f"HTTP {response.status_code} {_describe(response)}"
                asked_wait = _retry_after(response)
            if attempt + 1 == self.retry.attempts:
                break
            # An overloaded server may say how long to wait; never beyond max_backoff.
            delay = max(self.retry.delay(attempt), min(asked_wait, self.retry.max_backoff))
            if time.monotonic() + delay >= give_up_at:
                break
            log.warning(
                "%s %s%s failed (%s); try %d of %d in %.2f s",
                method,
                self.base_url,
                path,
                last,
                attempt + 2,
                self.retry.attempts,
                delay,
            )
            await asyncio.sleep(delay)
        raise ServiceUnavailable(
            f"service at {self.base_url} unavailable: {method} {path} failed {tries} times, "
            f"last: {last} (gave up after {time.monotonic() - began:.1f} s)"
        )

    async def list_models(self) -> ModelListing:
        return parse_listing(_json(await self._request("GET", "/models"), "GET /models"))

    async def metrics_text(self) -> str:
        """The service's Prometheus exposition (GET /metrics), all workers merged."""
        return (await self._request("GET", "/metrics")).text

    async def classify_npy(self, images: np.ndarray, model: str) -> tuple[np.ndarray, ...]:
        """One batch of uint8 ``(B, 28, 28)`` images → (class_index, confidence, probabilities)."""
        response = await self._request(
            "POST",
            "/classify_npy",
            files={"array": ("batch.npy", encode_npy(images), "application/octet-stream")},
            data={"model": model},
        )
        return parse_batch_answer(_json(response, "POST /classify_npy"), len(images), model)

    async def predict(
        self, images: np.ndarray, model: str, batch_size: int = 500, progress: bool = True
    ) -> ServedPredictions:
        """Every image through the service, ``concurrency`` batches in flight at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(images)
        index = np.empty(n, dtype=np.int64)
        confidence = np.empty(n, dtype=np.float64)
        probs = np.empty((n, NUM_CLASSES), dtype=np.float64)
        starts = list(range(0, n, batch_size))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for start in starts:
            queue.put_nowait(start)
        bar = tqdm(total=n, desc=model, unit="img", disable=not progress, leave=False)

        async def worker() -> None:
            while not queue.empty():
                start = queue.get_nowait()
                stop = min(start + batch_size, n)
                answer = await self.classify_npy(images[start:stop], model)
                index[start:stop], confidence[start:stop], probs[start:stop] = answer
                bar.update(stop - start)

        began = time.perf_counter()
        try:
            # A TaskGroup cancels the other workers as soon as one fails (or on Ctrl-C).
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(starts))):
                    group.create_task(worker())
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        finally:
            bar.close()
        return ServedPredictions(
            model, index, confidence, probs, time.perf_counter() - began, len(starts)
        )


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _first_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


def _retry_after(response: httpx.Response) -> float:
    """Seconds from a ``Retry-After: <seconds>`` header; 0 when absent or an HTTP date."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _describe(response: httpx.Response) -> str:
    """``reason: detail`` from a contract error body, else the start of the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and ("error" in body or "detail" in body):
        return f"{body.get('error', '?')}: {body.get('detail', '')}".rstrip(": ")
    return str(body)[:200]


def _error_from(response: httpx.Response, method: str, path: str) -> ServiceError:
    reason = None
    try:
        body = response.json()
        if isinstance(body, dict):
            reason = body.get("error")
    except ValueError:
        pass
    return ServiceError(
        f"service refused {method} {path} with HTTP {response.status_code}: {_describe(response)}",
        status=response.status_code,
        reason=reason,
    )


def _json(response: httpx.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ServiceError(f"{where}: answer is not JSON: {response.text[:200]!r}") from exc
