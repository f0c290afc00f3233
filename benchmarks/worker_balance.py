"""How evenly the service's workers share kept-alive connections.

    .venv/bin/python benchmarks/worker_balance.py --onnx-dir artifacts/onnx

Starts the service, opens N keep-alive connections at the same instant (a barrier), sends
R single-image requests on each, and prints requests/s and the CPU seconds each BentoML
worker process spent. Equal shares mean the load is spread; one worker with nearly all of
it means the connections landed on one worker (they stay there while kept alive).
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from pathlib import Path

import psutil

from service.launch import bentoml_server

BOUNDARY = "----fmnist-balance"


def multipart_png(png: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def worker_cpu(port: int) -> dict[int, float]:
    """CPU seconds of the BentoML worker processes (all on this machine: run it alone)."""
    cpu = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "_bentoml_impl.worker.service" in cmd:
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
    return cpu


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx-dir", type=Path, default=Path("artifacts/onnx"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=150, help="per client")
    p.add_argument("--image", type=Path, default=Path("docs/examples/ankle_boot.png"))
    args = p.parse_args(argv)
    body = multipart_png(args.image.read_bytes())
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with bentoml_server({"FMNIST_MODEL_DIR": str(args.onnx_dir.resolve())}) as url:
        port = int(url.rsplit(":", 1)[1])
        before = worker_cpu(port)
        start_line = threading.Barrier(args.clients)

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start_line.wait()
            for _ in range(args.requests):
                conn.request("POST", "/classify", body=body, headers=headers)
                conn.getresponse().read()
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        after = worker_cpu(port)
    shares = sorted(round(after[k] - before[k], 1) for k in before if k in after)
    rate = args.clients * args.requests / seconds
    print(
        f"{args.clients} clients connecting at once: {rate:.0f} requests/s; "
        f"CPU seconds per worker: {shares}"
    )


if __name__ == "__main__":
    main()
