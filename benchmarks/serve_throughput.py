"""Service throughput and latency against in-process onnxruntime and a default BentoML service.

    .venv/bin/python benchmarks/serve_throughput.py --onnx-dir artifacts/onnx
    .venv/bin/python benchmarks/serve_throughput.py --onnx-dir /tmp/q1/onnx --seconds 3 --quick

Measures, in one run (all on this machine, load generator included):
  1. in-process onnxruntime images/s at batch 1 and 64 (ORT default threads);
  2. the service's ``POST /classify`` (one PNG per request) requests/s and p50/p95/p99
     latency at 1, 8, 32 and 64 concurrent keep-alive clients, counting non-200 answers;
  3. the batch endpoint ``POST /classify_npy`` (1024 uint8 images per request) images/s;
  4. the reference: the same model in a minimal default BentoML service (one worker,
     default settings, a JSON pixel list per request) under the same load.
The load generator is a small asyncio HTTP/1.1 client (pre-encoded requests) so that it
takes as little CPU as possible from the servers. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.launch import bentoml_server  # noqa: E402

log = logging.getLogger("serve_throughput")

REFERENCE_SERVICE = """
import os
import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service
class Reference:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(os.environ["REF_MODEL"])

    @bentoml.api
    def classify(self, pixels: list[list[float]]) -> dict:
        x = np.asarray(pixels, dtype=np.float32).reshape(1, 1, 28, 28)
        probs = self.session.run(["probabilities"], {"pixels": x})[0][0]
        return {"class_index": int(probs.argmax()), "probabilities": probs.tolist()}
"""


@dataclass
class LoadResult:
    clients: int
    requests: int
    errors: int
    status_503: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(self.latencies, q) * 1000)


def http_request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def multipart(field: str, filename: str, data: bytes, extra: dict[str, str]) -> tuple[bytes, str]:
    boundary = "fmnistbenchboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in extra.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _client(
    host: str, port: int, requests: list[bytes], stop: float, out: LoadResult, offset: int
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            status = int(status_line.split()[1])
            out.latencies.append(time.perf_counter() - start)
            out.requests += 1
            if status != 200:
                out.errors += 1
                out.status_503 += status == 503
    finally:
        writer.close()


async def run_load(
    url: str, requests: list[bytes], clients: int, seconds: float, warmup: float = 1.0
) -> LoadResult:
    host, port = url.removeprefix("http://").split(":")
    if warmup:
        await run_load(url, requests, clients, warmup, warmup=0)
    out = LoadResult(clients, 0, 0, 0, 0.0, [])
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(
        *(_client(host, int(port), requests, stop, out, k * 7) for k in range(clients))
    )
    out.seconds = time.perf_counter() - start
    return out


def in_process_ort(path: Path, images: np.ndarray, batch: int, seconds: float) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images[:batch, None].astype(np.float32)
    session.run(["probabilities"], {"pixels": x})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(["probabilities"], {"pixels": x})
        done += batch
    return done / (time.perf_counter() - start)


def load_images(n: int) -> tuple[np.ndarray, str]:
    try:
        from fmnist.dataset import DatasetError, load_test_set

        return load_test_set(limit=n).images, "Fashion-MNIST test images"
    except (ImportError, DatasetError):
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), "random images"


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def fmt_row(name: str, r: LoadResult) -> str:
    return (
        f"| {name} | {r.clients} | {r.rps:,.0f} | {r.pct(50):.1f} | {r.pct(95):.1f} | "
        f"{r.pct(99):.1f} | {r.errors} ({r.status_503} × 503) |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--onnx-dir", type=Path, default=Path("artifacts/onnx"))
    p.add_argument("--model", default="baseline", choices=["baseline", "deeper"])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--seconds", type=float, default=8.0, help="per load level")
    p.add_argument("--workers", type=int, default=None, help="FMNIST_WORKERS (default: settings)")
    p.add_argument(
        "--max-latency-ms", type=int, default=None, help="FMNIST_BATCHING_MAX_LATENCY_MS"
    )
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--quick", action="store_true", help="only 1 and 32 clients")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    clients = [1, 32] if args.quick else args.clients
    model_path = args.onnx_dir / f"{args.model}.onnx"
    images, source = load_images(1024)
    lines = [f"model `{args.model}` ({model_path}), {source}, {os.cpu_count()} CPUs", ""]

    ort1 = in_process_ort(model_path, images, 1, args.seconds / 2)
    ort64 = in_process_ort(model_path, images, 64, args.seconds / 2)
    ort1024 = in_process_ort(model_path, images, 1024, args.seconds / 2)
    lines += [
        "| in-process onnxruntime | images/s |",
        "|---|---:|",
        f"| batch 1 | {ort1:,.0f} |",
        f"| batch 64 | {ort64:,.0f} |",
        f"| batch 1024 | {ort1024:,.0f} |",
        "",
    ]

    env = {"FMNIST_MODEL_DIR": str(args.onnx_dir.resolve()), "FMNIST_DEFAULT_MODEL": args.model}
    if args.workers:
        env["FMNIST_WORKERS"] = str(args.workers)
    if args.max_latency_ms:
        env["FMNIST_BATCHING_MAX_LATENCY_MS"] = str(args.max_latency_ms)
    table = [
        "| server | clients | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env["BENTOML_HOME"] = tmp
        with bentoml_server(env, log_path=Path(tmp) / "service.log") as url:
            host_port = url.removeprefix("http://").split(":")
            reqs = []
            for img in images[:256]:
                body, ctype = multipart("image", "x.png", png_bytes(img), {})
                reqs.append(http_request(host_port[0], int(host_port[1]), "/classify", body, ctype))
            for c in clients:
                r = asyncio.run(run_load(url, reqs, c, args.seconds))
                log.info("service %d clients: %.0f req/s", c, r.rps)
                table.append(fmt_row("service `/classify` (PNG)", r))
            npy = io.BytesIO()
            np.save(npy, images)
            body, ctype = multipart("array", "a.npy", npy.getvalue(), {})
            batch_req = [
                http_request(host_port[0], int(host_port[1]), "/classify_npy", body, ctype)
            ]
            rb = asyncio.run(run_load(url, batch_req, 2, args.seconds))
            batch_ips = rb.rps * len(images)
        if not args.skip_reference:
            ref_dir = Path(tmp) / "ref"
            ref_dir.mkdir()
            (ref_dir / "ref_service.py").write_text(REFERENCE_SERVICE)
            ref_env = {"REF_MODEL": str(model_path.resolve()), "BENTOML_HOME": tmp}
            with bentoml_server(
                ref_env, target="ref_service:Reference", cwd=ref_dir, ready_path="/readyz"
            ) as url:
                host, port = url.removeprefix("http://").split(":")
                reqs = [
                    http_request(
                        host,
                        int(port),
                        "/classify",
                        json.dumps({"pixels": img.tolist()}).encode(),
                        "application/json",
                    )
                    for img in images[:256]
                ]
                for c in clients:
                    r = asyncio.run(run_load(url, reqs, c, args.seconds))
                    log.info("reference %d clients: %.0f req/s", c, r.rps)
                    table.append(fmt_row("reference (default BentoML, JSON)", r))
    lines += table + [
        "",
        "| batch endpoint `/classify_npy` (1024 images/request, 2 clients) "
        "| images/s | vs in-process batch 64 | vs batch 1024 |",
        "|---|---:|---:|---:|",
        f"| {rb.errors} errors | {batch_ips:,.0f} | {batch_ips / ort64:.0%} | "
        f"{batch_ips / ort1024:.0%} |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
