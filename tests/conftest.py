"""Shared fixtures: a small synthetic Fashion-MNIST on disk and small exported ONNX models.

Nothing here needs the real dataset. The synthetic images are class-dependent (a bright
band whose row depends on the label, plus noise) so that a few training steps can learn
them and a classifier's answers are not all the same.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmnist.dataset import CLASS_NAMES, FILES, write_idx


def make_images(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + int(label) * 2
        images[i, row : row + 3, 4:24] = 200 + rng.integers(0, 55)
    return images


def write_synthetic_dataset(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """Four gzipped IDX files with the real names; checksums will not match the real set."""
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 10, n_train).astype(np.uint8)
    test_labels = (np.arange(n_test) % 10).astype(np.uint8)
    write_idx(folder / FILES["train_images"][0], make_images(train_labels, 1))
    write_idx(folder / FILES["train_labels"][0], train_labels)
    write_idx(folder / FILES["test_images"][0], make_images(test_labels, 2))
    write_idx(folder / FILES["test_labels"][0], test_labels)
    return folder


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("fmnist-synthetic"))


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """baseline.onnx and deeper.onnx exported from seeded, untrained networks.

    Exporting is slow-ish (a few seconds each), so it happens once per session. Tests that
    use it need torch (the training extra); the service and evaluation code under test
    does not.
    """
    torch = pytest.importorskip("torch")
    from training.export import export_onnx
    from training.models import build_model, count_parameters

    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name in ("baseline", "deeper"):  # not MODELS: it also has the optional "improved"
        torch.manual_seed(0)
        net = build_model(name).eval()
        paths[name] = export_onnx(
            net,
            folder / f"{name}.onnx",
            {
                "model_name": name,
                "class_names": list(CLASS_NAMES),
                "parameters": str(count_parameters(net)),
                "test_accuracy": "0.1",
                "val_accuracy": "0.1",
                "code_revision": "test",
            },
        )
    return paths


@pytest.fixture(scope="session")
def onnx_models_three(
    onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """baseline.onnx and deeper.onnx (copies of ``onnx_models``) plus improved.onnx.

    ``improved`` is a seeded, untrained ImprovedCNN exported with temperature 1.5 folded
    into the graph, with the improved recipe's extra metadata (``temperature``, ``weights``).
    """
    torch = pytest.importorskip("torch")
    from training.export import export_onnx
    from training.models import build_model, count_parameters

    folder = tmp_path_factory.mktemp("onnx-three")
    paths = {n: Path(shutil.copy2(p, folder / p.name)) for n, p in onnx_models.items()}
    torch.manual_seed(0)
    net = build_model("improved").eval()
    paths["improved"] = export_onnx(
        net,
        folder / "improved.onnx",
        {
            "model_name": "improved",
            "class_names": list(CLASS_NAMES),
            "parameters": str(count_parameters(net)),
            "test_accuracy": "0.1",
            "val_accuracy": "0.1",
            "code_revision": "test",
            "temperature": "1.5",
            "weights": "best",
            # As fmnist-export writes it: JSON with nulls (the model store rejects None).
            "training_config": {"model": "improved", "patience": None, "limit_batches": None},
        },
        temperature=1.5,
    )
    return paths


# -- the HTTP layer in-process: a stub backend behind create_app, through httpx ----------


class StubBackend:
    """The Backend protocol of service/endpoints.py without models or batchers.

    Answers with one-hot-ish probabilities whose top class is ``int(mean pixel) % 10``, so
    a test can tell which pixels reached the model; ``raises`` makes the next model calls
    fail with that exception; ``calls`` records (method, model, pixels).
    """

    def __init__(self, max_batch_size: int = 8, max_body_bytes: int = 200_000) -> None:
        from service.metrics import service_metrics
        from service.settings import ServiceSettings

        self.settings = ServiceSettings.model_validate(
            {"max_batch_size": max_batch_size, "max_body_bytes": max_body_bytes}
        )
        from service.versions import Routing

        # each model's one version: its stub sha256's first 12 digits, as for a file
        version = {n: hashlib.sha256(n.encode()).hexdigest()[:12] for n in ("baseline", "deeper")}
        self.routing = Routing(
            {n: (v,) for n, v in version.items()},
            {n: {"production": v} for n, v in version.items()},
            "baseline",
        )
        self.worker = "0"
        self.metrics = service_metrics()
        self.ready = True
        self.raises: BaseException | None = None
        self.calls: list[tuple[str, str, np.ndarray]] = []

    def _answer(self, model: str, pixels: np.ndarray) -> np.ndarray:
        if self.raises is not None:
            raise self.raises
        top = pixels.reshape(len(pixels), -1).mean(axis=1).astype(int) % 10
        probs = np.full((len(pixels), 10), 0.02, dtype=np.float32)
        probs[np.arange(len(pixels)), top] = 0.82
        return probs

    @property
    def served_models(self) -> tuple[str, ...]:
        return self.routing.names

    @property
    def default_model(self) -> str:
        return self.routing.default

    def resolve(self, raw: object) -> Any:
        return self.routing.resolve(raw)

    async def classify_one(self, target: Any, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(("one", target.name, pixels))
        return self._answer(target.name, pixels[None])[0]

    async def classify_many(self, target: Any, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(("many", target.name, pixels))
        return self._answer(target.name, pixels)

    def model_listing(self) -> dict[str, Any]:
        return {
            "default": self.default_model,
            "aliases": self.routing.aliases,
            "models": [
                {
                    "name": name,
                    "version": self.routing.versions[name][0],
                    "aliases": ["production"],
                    "parameters": 1000 + i,
                    "test_accuracy": 0.9,
                    "val_accuracy": 0.91,
                    "sha256": hashlib.sha256(name.encode()).hexdigest(),
                    "opset": 18,
                    "input": {
                        "name": "pixels",
                        "dtype": "float32",
                        "shape": ["N", 1, 28, 28],
                        "range": [0, 255],
                        "description": "raw pixels 0-255",
                    },
                    "metadata": {"model_name": name, "class_names": list(CLASS_NAMES)},
                    "providers": ["CPUExecutionProvider"],
                }
                for i, name in enumerate(self.served_models)
            ],
        }

    def __is_ready__(self) -> bool:
        return self.ready


class ApiClient:
    """Requests to ``create_app(backend)`` through ``httpx.ASGITransport``: no server."""

    def __init__(self, backend: StubBackend) -> None:
        from service.http_api import create_app

        self.backend = backend
        self.app = create_app(backend)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import asyncio

        import httpx

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def stub_backend() -> StubBackend:
    return StubBackend()


@pytest.fixture
def api(stub_backend: StubBackend) -> ApiClient:
    """The app over a stub backend (max 8 images per batch, 200,000-byte bodies)."""
    return ApiClient(stub_backend)


# -- evaluation: a fake classification service over real HTTP --------------------------
# A threaded http.server speaking docs/api.md (GET /models, POST /classify_npy, the
# contract's answers and error bodies), answering with onnxruntime from ``onnx_models``.
# It can answer 503 a few times first, enforce a batch limit (413), slow down or hang, so
# the evaluation client's retries, 4xx handling and Ctrl-C are tested over real sockets
# without depending on the BentoML service.


def split_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = data[:-2]  # the CRLF before the next boundary
    return fields


class FakeService:
    """docs/api.md's /models and /classify_npy on a free loopback port."""

    def __init__(
        self,
        models: dict[str, Path],
        fail_first: int = 0,
        max_batch: int = 1024,
        delay: float = 0.0,
        hang: bool = False,
    ) -> None:
        import onnxruntime as ort  # only the evaluation tests need it

        self.sessions = {
            n: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
            for n, p in models.items()
        }
        self.paths = models
        self.fail_left, self.max_batch, self.delay = fail_first, max_batch, delay
        self.hang = threading.Event() if hang else None
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.npy_requests = self.failed = self.in_flight = self.max_in_flight = 0
        self.client_ports: set[int] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def listing(self) -> dict[str, Any]:
        models = []
        for name, sess in self.sessions.items():
            meta = sess.get_modelmeta().custom_metadata_map
            models.append(
                {
                    "name": name,
                    "parameters": int(meta["parameters"]),
                    "test_accuracy": float(meta["test_accuracy"]),
                    "val_accuracy": float(meta["val_accuracy"]),
                    "sha256": hashlib.sha256(self.paths[name].read_bytes()).hexdigest(),
                    "opset": 18,
                    "input": {},
                    "metadata": meta,
                }
            )
        return {"default": "baseline", "models": models}

    def classify(self, fields: dict[str, bytes]) -> tuple[int, dict[str, Any]]:
        model = fields.get("model", b"baseline").decode()
        if model not in self.sessions:
            return 404, {"error": "unknown_model", "detail": f"no model {model!r}"}
        pixels = np.load(io.BytesIO(fields["array"]), allow_pickle=False)
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (28, 28):
            return 400, {"error": "wrong_shape", "detail": f"got {pixels.dtype} {pixels.shape}"}
        if len(pixels) > self.max_batch:
            return 413, {
                "error": "batch_too_large",
                "detail": f"{len(pixels)} images; at most {self.max_batch} per request",
            }
        probs = self.sessions[model].run(
            ["probabilities"], {"pixels": pixels.astype(np.float32)[:, None]}
        )[0]
        return 200, {
            "model": model,
            "count": len(probs),
            "class_names": list(CLASS_NAMES),
            "class_index": probs.argmax(1).tolist(),
            "confidence": probs.max(1).tolist(),
            "probabilities": probs.tolist(),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with fake.lock:
                    fake.client_ports.add(self.client_address[1])
                if self.path == "/models":
                    self.reply(200, fake.listing())
                else:
                    self.reply(404, {"error": "not_found", "detail": self.path})

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with fake.lock:
                    fake.client_ports.add(self.client_address[1])
                    fake.npy_requests += 1
                    fail = fake.fail_left > 0
                    fake.fail_left -= fail
                    fake.failed += fail
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.hang is not None:
                        fake.hang.set()
                        fake.release.wait(30)
                    time.sleep(fake.delay)
                    if fail:
                        self.reply(503, {"error": "overloaded", "detail": "try again"})
                    elif self.path != "/classify_npy":
                        self.reply(404, {"error": "not_found", "detail": self.path})
                    else:
                        self.reply(
                            *fake.classify(split_multipart(body, self.headers["Content-Type"]))
                        )
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        return Handler

    def __enter__(self) -> FakeService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _fake_services(models: dict[str, Path]) -> Iterator[Callable[..., FakeService]]:
    """Start FakeService(models, **options) servers; all stop at teardown."""
    started: list[FakeService] = []

    def start(**options: Any) -> FakeService:
        service = FakeService(models, **options).__enter__()
        started.append(service)
        return service

    yield start
    for service in started:
        service.__exit__(None, None, None)


@pytest.fixture
def fake_service(onnx_models: dict[str, Path]) -> Iterator[Callable[..., FakeService]]:
    """FakeService servers for baseline and deeper."""
    yield from _fake_services(onnx_models)


@pytest.fixture
def fake_service_three(
    onnx_models_three: dict[str, Path],
) -> Iterator[Callable[..., FakeService]]:
    """Like ``fake_service``, serving baseline, deeper and improved."""
    yield from _fake_services(onnx_models_three)


@pytest.fixture
def dead_url() -> str:
    """A loopback URL on which nothing listens (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
