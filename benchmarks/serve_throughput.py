"""Serving benchmark that measures the server, not the client (issue 11, item 4).

    make bench-peers    # once: the KServe peer's own virtualenv (.venv-peers)
    make bench-serve    # .venv/bin/python benchmarks/serve_throughput.py --onnx-dir artifacts/onnx

In one run, on one PNG (a Fashion-MNIST test image), one server at a time on 127.0.0.1:
  1. this service (loadtests.launch, FMNIST_WORKERS=2): ``POST /classify`` multipart, plus
     the raw ``image/png`` body and the v2 JSON endpoint when the service answers them;
  2. the default BentoML reference (benchmarks/peers/reference_service.py, 1 worker, raw
     PNG body) and 3. the KServe Python model server (benchmarks/peers/kserve_model.py,
     ``--workers 2``, v2 JSON of one [1,1,28,28] FP32 tensor), same ONNX file;
each at 1, 32 and 256 connections opened at once (wrk, closed loop), then at a fixed
offered load of 50 % of the best rate measured so far (hey, before the largest count);
4. ``/classify_npy`` at batch 64 against in-process onnxruntime at batch 64 (one session,
and one per worker in parallel, 1 thread each like the service); 5. recovery, on a freshly
started service: idle latency, a burst of 256 connections, idle latency 5 s and 30 s after.
Server CPU is read from /proc for the whole process tree before and after each window.
Prints Markdown ready to paste into docs/performance.md; ``--json FILE`` keeps raw figures.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]
import loadgen as lg  # noqa: E402
import serve_report  # noqa: E402

from fmnist.contract import onnx_filename  # noqa: E402
from fmnist.registry import study_models  # noqa: E402
from loadtests.launch import bentoml_server, free_port  # noqa: E402

log = logging.getLogger("bench-serve")
PEERS = HERE / "peers"
PEER_PYTHON = REPO / ".venv-peers" / "bin" / "python"
BATCH = 64
# The service's histogram of its onnxruntime calls (service/metrics.py): where its time goes.
MODEL_CALLS = "fmnist_inference_seconds"


# ---------------------------------------------------------------- requests and in-process
def v2_body(pixels: np.ndarray, name: str = "pixels") -> bytes:
    data = pixels.astype(np.float32).reshape(-1).tolist()
    tensor = {"name": name, "shape": [1, 1, 28, 28], "datatype": "FP32", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def v2_binary_request(model: str, images: np.ndarray) -> lg.Request:
    """The batch through the v2 endpoint with the binary tensor data extension: UINT8
    [N, 1, 28, 28] bytes after the JSON header in, FP32 bytes of the answer out."""
    data = np.ascontiguousarray(images[:, None], dtype=np.uint8).tobytes()
    tensor = {"name": "pixels", "datatype": "UINT8", "shape": [len(images), 1, 28, 28]}
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    return lg.Request(
        "v2 binary batch 64",
        f"/v2/models/{model}/infer",
        header + data,
        "application/octet-stream",
        (("Inference-Header-Content-Length", str(len(header))),),
    )


def batch_images(png_pixels: np.ndarray) -> tuple[np.ndarray, str]:
    try:
        from fmnist.dataset import load_test_set

        return load_test_set(limit=BATCH).images, "the first 64 test images"
    except Exception:  # no dataset here: the PNG repeated is as costly for onnxruntime
        return np.repeat(png_pixels[None], BATCH, axis=0), "the PNG repeated"


def _ort_loop(path: str, x: np.ndarray, seconds: float, threads: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    sess.run(["probabilities"], {"pixels": x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(["probabilities"], {"pixels": x})
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def in_process(path: Path, images: np.ndarray, seconds: float, procs: int) -> float:
    """Images/s of ``procs`` processes each running onnxruntime (1 thread) at batch 64."""
    x = images[:, None].astype(np.float32)
    threads = int(os.environ.get("FMNIST_ORT_INTRA_THREADS", "1"))
    with mp.get_context("spawn").Pool(procs) as pool:
        return sum(pool.starmap(_ort_loop, [(str(path), x, seconds, threads)] * procs))


# ---------------------------------------------------------------- measuring one server
class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.points: list[dict[str, Any]] = []
        self.fixed: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}

    def guard(self, name: str, run: Callable[..., None], *args: Any) -> bool:
        """Run one server's part; on failure keep going, with its log's tail on stderr."""
        try:
            run(*args)
            return True
        except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
            for path in sorted(self.tmp.glob(f"{name}*.log")):
                tail = path.read_text(errors="replace").splitlines()[-15:]
                log.error("%s:\n%s", path.name, "\n".join(tail))
            log.error("%s failed: %s", name, exc)
            self.notes.append(f"{name}: failed ({exc}); its log's tail went to stderr")
            return False

    def point(
        self,
        server: str,
        url: str,
        pid: int,
        workers: int,
        req: lg.Request,
        conns: int,
        seconds: float,
    ) -> dict[str, Any]:
        _, script = req.files(self.tmp)
        with lg.CpuMeter(pid, url, workers) as meter:
            w = lg.run_wrk(url + req.path, script, conns, seconds, self.args.wrk_threads)
            p = {
                "server": server,
                "request": req.label,
                "conns": conns,
                **w,
                **meter.result(w["requests"], w["client_cpu_s"]),
            }
        log.info(
            "%s %s c=%d: %.0f req/s p99 %.1f ms, %.2f CPU ms/req, %.2f cores",
            server,
            req.label,
            conns,
            p["rps"],
            p["p99"],
            p["cpu_ms_per_req"],
            p["cores_busy"],
        )
        return p

    def sweep(self, server: str, url: str, pid: int, workers: int, reqs: list[lg.Request]) -> None:
        a = self.args
        for req in reqs:  # warm-up: first connections, first batches, caches
            _, script = req.files(self.tmp)
            lg.run_wrk(url + req.path, script, 8, a.warmup, 1)
        conns = sorted(a.connections)
        for i, c in enumerate(conns):
            if i == len(conns) - 1 and not a.no_fixed:
                self.fixed_load(server, url, pid, workers, reqs[0])
            for req in reqs:
                time.sleep(a.settle)
                self.points.append(self.point(server, url, pid, workers, req, c, a.seconds))

    def fixed_load(self, server: str, url: str, pid: int, workers: int, req: lg.Request) -> None:
        best = max(
            (p["rps"] for p in self.points if p["server"] == server and p["request"] == req.label),
            default=0.0,
        )
        if best <= 0:
            return
        body, script = req.files(self.tmp)
        rate = best * self.args.fixed_fraction
        conns = self.args.fixed_workers
        loads: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            (
                "Poisson (wrk)",
                lambda: lg.run_wrk_paced(url + req.path, script, rate, self.args.seconds, conns),
            ),
            ("in step (hey)", lambda: lg.run_hey(url, req, body, rate, self.args.seconds, conns)),
        ]
        for arrivals, load in loads:
            time.sleep(self.args.settle)
            with lg.CpuMeter(pid, url, workers) as meter:
                h = load()
                h.update(meter.result(h["requests"], h["client_cpu_s"]))
            self.fixed.append(
                {
                    "server": server,
                    "request": req.label,
                    "capacity": best,
                    **h,
                    "arrivals": arrivals,
                }
            )
            log.info(
                "%s fixed %.0f req/s, %s: got %.0f, p99 %.1f ms",
                server,
                rate,
                arrivals,
                h.get("rps", 0),
                h.get("p99", float("nan")),
            )

    # ------------------------------------------------------------ the three servers
    def service(self, onnx_dir: Path, png: bytes, pixels: np.ndarray) -> None:
        a = self.args
        env = {
            "FMNIST_MODEL_DIR": str(onnx_dir.resolve()),
            "FMNIST_WORKERS": str(a.workers),
            "FMNIST_DEFAULT_MODEL": a.model,
            "BENTOML_HOME": str(self.tmp / "bentoml"),
        }
        body, ctype = lg.multipart("image", "image.png", png, "image/png")
        reqs = [lg.Request("multipart PNG", "/classify", body, ctype)]
        optional = [
            lg.Request("raw PNG body", "/classify", png, "image/png"),
            lg.Request(
                "v2 JSON", f"/v2/models/{a.model}/infer", v2_body(pixels), "application/json"
            ),
        ]
        with bentoml_server(env, log_path=self.tmp / "service.log") as url:
            pid = lg.child_server_pid(int(url.rsplit(":", 1)[1]))
            for req in optional:
                status, _ = lg.post(url, req)
                if status == 200:
                    reqs.append(req)
                else:
                    self.notes.append(
                        f"service {req.label} `{req.path}`: answered {status}, not measured"
                    )
            self.sweep("service", url, pid, a.workers, reqs)
            if not a.no_batch:
                self.batch(url, pid)
        if not a.no_recovery:
            with bentoml_server(env, log_path=self.tmp / "service-recovery.log") as url:
                self.recovery(url, lg.child_server_pid(int(url.rsplit(":", 1)[1])), reqs[0])

    def batch(self, url: str, pid: int) -> None:
        """The 64-image .npy batch as a multipart form ("batch") and as the raw body."""
        npy = io.BytesIO()
        np.save(npy, self.extra["batch_images"])
        body, ctype = lg.multipart("array", "batch.npy", npy.getvalue(), "application/octet-stream")
        requests = {
            "batch": lg.Request("npy batch 64", "/classify_npy", body, ctype),
            "batch_raw": lg.Request(
                "npy batch 64, raw body", "/classify_npy", npy.getvalue(), "application/x-npy"
            ),
            "batch_v2": v2_binary_request(self.args.model, self.extra["batch_images"]),
        }
        a = self.args
        model = a.onnx_dir / onnx_filename(a.model)
        for key, req in requests.items():
            # warm-up, as every other point gets: first connections, first parses, caches
            _, script = req.files(self.tmp)
            lg.run_wrk(url + req.path, script, a.batch_connections, a.warmup, 1)
            # onnxruntime alone, just before and just after the point: the machine's speed
            # drifts over a run by more than the goal's margin (docs/performance.md).
            before = in_process(model, self.extra["batch_images"], a.seconds / 2, a.workers)
            time.sleep(a.settle)
            calls0 = lg.histogram_totals(url, MODEL_CALLS, model=a.model)
            p = self.point("service", url, pid, a.workers, req, a.batch_connections, a.seconds)
            calls1 = lg.histogram_totals(url, MODEL_CALLS, model=a.model)
            after = in_process(model, self.extra["batch_images"], a.seconds / 2, a.workers)
            p["images_per_s"] = p["rps"] * BATCH
            p["inproc_around"] = [before, after]
            if calls0 and calls1 and calls1[1] > calls0[1]:  # where the server's time went
                p["model_ms_per_call"] = 1e3 * (calls1[0] - calls0[0]) / (calls1[1] - calls0[1])
                p["model_calls_per_req"] = (calls1[1] - calls0[1]) / p["requests"]
            self.extra[key] = p

    def recovery(self, url: str, pid: int, req: lg.Request) -> None:
        a = self.args
        _, script = req.files(self.tmp)
        lg.run_wrk(url + req.path, script, 8, a.warmup, 1)
        time.sleep(a.settle)
        rec: dict[str, Any] = {"before": lg.idle_latency(url, req, a.idle_requests)}
        burst = self.point("service", url, pid, a.workers, req, a.burst_connections, a.burst)
        end = time.monotonic()
        rec["burst"] = burst
        for at in a.recovery_at:
            time.sleep(max(0.0, end + at - time.monotonic()))
            rec[f"{at:g} s after"] = lg.idle_latency(url, req, a.idle_requests)
        self.extra["recovery"] = rec

    def reference(self, model: Path, png: bytes) -> None:
        env = {"REF_MODEL": str(model.resolve()), "BENTOML_HOME": str(self.tmp / "bentoml-ref")}
        with bentoml_server(
            env,
            target="reference_service:Reference",
            cwd=PEERS,
            log_path=self.tmp / "reference.log",
        ) as url:
            pid = lg.child_server_pid(int(url.rsplit(":", 1)[1]))
            self.sweep(
                "BentoML reference",
                url,
                pid,
                1,
                [lg.Request("raw PNG body", "/img", png, "image/png")],
            )

    def kserve(self, model: Path, pixels: np.ndarray) -> None:
        check = (
            subprocess.run(
                [str(PEER_PYTHON), "-c", "import kserve, onnxruntime"], capture_output=True
            )
            if PEER_PYTHON.exists()
            else None
        )
        if check is None or check.returncode != 0:
            self.notes.append(
                "KServe peer skipped: no .venv-peers with kserve (run `make bench-peers` once)"
            )
            return
        port = free_port()
        cmd = [
            str(PEER_PYTHON),
            str(PEERS / "kserve_model.py"),
            "--model_path",
            str(model.resolve()),
            "--http_port",
            str(port),
            "--workers",
            str(self.args.workers),
            "--enable_grpc",
            "false",
        ]
        url = f"http://127.0.0.1:{port}"
        with lg.process_server(
            cmd, {}, url + "/v2/models/fmnist/ready", self.tmp / "kserve.log"
        ) as pid:
            self.sweep(
                "KServe",
                url,
                pid,
                self.args.workers,
                [
                    lg.Request(
                        "v2 JSON", "/v2/models/fmnist/infer", v2_body(pixels), "application/json"
                    )
                ],
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--onnx-dir", type=Path, default=REPO / "artifacts" / "onnx")
    p.add_argument("--image", type=Path, default=REPO / "docs" / "examples" / "ankle_boot.png")
    p.add_argument(
        "--model", default=study_models()[0], help="the model measured (its <name>.onnx)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="per point")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 32, 256])
    p.add_argument("--workers", type=int, default=2, help="service and KServe workers")
    p.add_argument("--skip-peers", action="store_true", help="only this service")
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 s points, a 5 s burst, idle latency 5 s after it only",
    )
    p.add_argument("--no-fixed", action="store_true", help="skip the fixed-load points")
    p.add_argument("--no-batch", action="store_true", help="skip the batch endpoint")
    p.add_argument("--no-recovery", action="store_true", help="skip the recovery phase")
    p.add_argument("--fixed-fraction", type=float, default=0.5)
    p.add_argument(
        "--fixed-workers", type=int, default=32, help="connections of the fixed-load points"
    )
    p.add_argument("--batch-connections", type=int, default=8)
    p.add_argument("--burst", type=float, default=20.0, help="seconds of the overload burst")
    p.add_argument("--burst-connections", type=int, default=256)
    p.add_argument("--recovery-at", type=float, nargs="+", default=[5.0, 30.0])
    p.add_argument("--idle-requests", type=int, default=20)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--settle", type=float, default=1.0, help="pause before each point")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.burst, args.recovery_at = min(args.seconds, 3.0), 5.0, [5.0]
        args.idle_requests, args.warmup = 10, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    missing = [t for t in ("wrk", "hey") if shutil.which(t) is None]
    model = args.onnx_dir / onnx_filename(args.model)
    if missing or not model.exists():
        print(
            f"bench-serve: missing {', '.join(missing) or model} (run `make setup`; "
            "wrk and hey are Debian packages)",
            file=sys.stderr,
        )
        return 2
    png = args.image.read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint8)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)  # stop the servers on kill as on Ctrl-C
    try:
        return run(args, model, png, pixels)
    except KeyboardInterrupt:
        print("bench-serve: interrupted; every server it started is stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, model: Path, png: bytes, pixels: np.ndarray) -> int:
    meta = {"header": serve_report.header(args, model, args.image, PEER_PYTHON)}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        b = Bench(args, Path(tmp))
        images, b.extra["batch_source"] = batch_images(pixels)
        b.extra["batch_images"] = images
        if not args.no_batch:
            b.extra["inproc"] = {
                n: in_process(model, images, args.seconds / 2, n) for n in sorted({1, args.workers})
            }
        ok = b.guard("service", b.service, args.onnx_dir, png, pixels)
        if not args.skip_peers:
            b.guard("reference", b.reference, model, png)
            b.guard("kserve", b.kserve, model, pixels)
        text = serve_report.report(b, meta)
    print(text)
    if args.json:
        del b.extra["batch_images"]
        raw = {"meta": meta, "points": b.points, "fixed": b.fixed, "notes": b.notes, **b.extra}
        args.json.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
