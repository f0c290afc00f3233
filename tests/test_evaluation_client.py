"""The evaluation HTTP client: retries, 4xx, contract checks, concurrency.

Fast tests use a closed loopback port or httpx's MockTransport; the slow ones talk to the
``fake_service`` fixture (conftest.py), a real threaded HTTP server speaking docs/api.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from evaluation.client import (
    RetryPolicy,
    ServedPredictions,
    ServiceClient,
    ServiceError,
    ServiceUnavailable,
)
from fmnist.dataset import CLASS_NAMES, load_test_set

FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.02)


def run_predict(url: str, images: np.ndarray, model: str, **options: Any) -> ServedPredictions:
    batch_size = options.pop("batch_size")

    async def go() -> ServedPredictions:
        async with ServiceClient(url, **options) as client:
            await client.list_models()
            return await client.predict(images, model, batch_size=batch_size, progress=False)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def images(synthetic_data_dir: Path) -> np.ndarray:
    return load_test_set(synthetic_data_dir, verify=False).images


def test_client_gives_up_on_a_closed_port_after_bounded_retries(dead_url: str) -> None:
    async def go() -> None:
        async with ServiceClient(dead_url, retry=RetryPolicy(3, 0.01, 0.01)) as client:
            await client.list_models()

    began = time.perf_counter()
    with pytest.raises(ServiceUnavailable, match=r"GET /models failed 3 times.*Connect"):
        asyncio.run(go())
    assert time.perf_counter() - began < 2.0


def test_every_retry_is_a_warning_saying_what_failed_and_when_the_next_try_is(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with ServiceClient(dead_url, retry=RetryPolicy(3, 0.01, 0.02)) as client:
            await client.list_models()

    with (
        caplog.at_level(logging.WARNING, logger="evaluation.client"),
        pytest.raises(ServiceUnavailable, match="failed 3 times"),
    ):
        asyncio.run(go())
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2  # three tries, two retries
    assert messages[0].startswith(f"GET {dead_url}/models failed (Connect")
    assert messages[0].endswith("; try 2 of 3 in 0.01 s")
    assert messages[1].endswith("; try 3 of 3 in 0.02 s")


def test_client_gives_up_on_a_service_that_stays_overloaded() -> None:
    calls = []

    def overloaded(request: httpx.Request) -> httpx.Response:
        calls.append(time.perf_counter())
        headers = {"Retry-After": "0.3"} if len(calls) == 1 else {}
        body = {"error": "overloaded", "detail": "try again"}
        return httpx.Response(503, json=body, headers=headers)

    async def go() -> None:
        transport = httpx.MockTransport(overloaded)
        async with ServiceClient(
            "http://svc", retry=RetryPolicy(3, 0.01, 1.0), transport=transport
        ) as client:
            await client.list_models()

    with pytest.raises(ServiceUnavailable, match="failed 3 times, last: HTTP 503 overloaded: try"):
        asyncio.run(go())
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.3  # Retry-After honoured
    assert calls[2] - calls[1] < 0.3  # then back to the policy's own (short) backoff


@pytest.fixture
def always_503() -> Iterator[tuple[str, list[float]]]:
    """A real loopback server that answers every request 503; yields (url, request times)."""
    hits: list[float] = []

    class Overloaded(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(time.perf_counter())
            body = b'{"error": "overloaded", "detail": "always"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_client_stops_after_its_configured_tries_against_a_real_503_server(
    always_503: tuple[str, list[float]],
) -> None:
    """A retry loop that never gives up would hang here: wait_for turns that into a failure."""
    url, hits = always_503

    async def go() -> None:
        async with ServiceClient(url, retry=RetryPolicy(4, 0.01, 0.02)) as client:
            await client.list_models()

    with pytest.raises(ServiceUnavailable, match="failed 4 times, last: HTTP 503 overloaded"):
        asyncio.run(asyncio.wait_for(go(), timeout=10))
    assert len(hits) == 4


def classify_against(body: dict[str, Any], images: int) -> None:
    """Run the client's /classify_npy call against a server that answers ``body``."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async def go() -> None:
        async with ServiceClient("http://svc", transport=httpx.MockTransport(answer)) as c:
            await c.classify_npy(np.zeros((images, 28, 28), np.uint8), "baseline")

    asyncio.run(go())


def one_answer(**changes: Any) -> dict[str, Any]:
    """A well-formed batch answer for one image, with ``changes`` applied."""
    return {
        "model": "baseline",
        "count": 1,
        "class_names": list(CLASS_NAMES),
        "class_index": [0],
        "confidence": [1.0],
        "probabilities": [[1.0] + [0.0] * 9],
        **changes,
    }


def test_client_rejects_an_answer_with_another_class_order() -> None:
    """Scoring against a reordered label list would be silently wrong: it must stop."""
    with pytest.raises(ServiceError, match="class_names"):
        classify_against(one_answer(class_names=list(reversed(CLASS_NAMES))), images=1)


def test_client_rejects_a_short_answer() -> None:
    with pytest.raises(ServiceError, match=r"shapes class_index \(1,\)"):
        classify_against(one_answer(probabilities=[[0.1] * 10]), images=2)


@pytest.mark.slow
def test_client_recovers_after_two_503s_and_matches_onnxruntime(
    fake_service: Any, onnx_models: dict[str, Path], images: np.ndarray
) -> None:
    svc = fake_service(fail_first=2)
    served = run_predict(svc.url, images, "deeper", batch_size=64, retry=FAST_RETRY, concurrency=2)
    assert svc.failed == 2
    assert svc.npy_requests == 4 + 2  # 200 images in 64-image batches, plus two 503s
    sess = ort.InferenceSession(str(onnx_models["deeper"]), providers=["CPUExecutionProvider"])
    expected = sess.run(["probabilities"], {"pixels": images.astype(np.float32)[:, None]})[0]
    np.testing.assert_array_equal(served.class_index, expected.argmax(1))
    np.testing.assert_allclose(served.probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(served.confidence, expected.max(1), atol=1e-6)
    assert served.requests == 4 and served.model == "deeper"


@pytest.mark.slow
def test_client_bounds_concurrency_and_reuses_connections(
    fake_service: Any, images: np.ndarray
) -> None:
    svc = fake_service(delay=0.05)
    run_predict(svc.url, images, "baseline", batch_size=20, concurrency=3)
    assert svc.npy_requests == 10
    assert svc.max_in_flight == 3
    assert len(svc.client_ports) <= 3  # keep-alive: 11 requests over at most 3 connections


@pytest.mark.slow
def test_client_stops_at_a_4xx_with_the_servers_message(
    fake_service: Any, images: np.ndarray
) -> None:
    svc = fake_service(max_batch=50)
    with pytest.raises(ServiceError) as info:
        run_predict(svc.url, images, "baseline", batch_size=100, retry=FAST_RETRY, concurrency=2)
    assert info.value.status == 413 and info.value.reason == "batch_too_large"
    assert "at most 50 per request" in str(info.value)
    assert not isinstance(info.value, ServiceUnavailable)
    assert svc.npy_requests <= 2  # no retries of a client mistake
