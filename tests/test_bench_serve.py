"""The serving benchmark's machinery (benchmarks/serve_throughput.py, benchmarks/loadgen.py).

Fast: the parsers of wrk's and hey's output and of per-worker counters, the CPU reading
of a process tree from /proc, the Markdown report. Slow: wrk and hey against a stub HTTP
server, and a tiny run of the whole benchmark against a real ``bentoml serve``.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import loadgen as lg  # noqa: E402
import serve_report  # noqa: E402

needs_tools = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("hey") is None,
    reason="wrk and hey are Debian packages (scripts/setup.sh installs them)",
)

HEY_OUTPUT = """
Summary:
  Total:\t10.0091 secs
  Requests/sec:\t499.6397

Latency distribution:
  10% in 0.0016 secs
  50% in 0.0028 secs
  90% in 0.0051 secs
  99% in 0.0120 secs

Status code distribution:
  [200]\t4990 responses
  [503]\t4 responses

Error distribution:
  [2]\tPost "http://127.0.0.1:1/x": dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_parse_wrk_reads_the_done_hook_line() -> None:
    line = (
        'WRKJSON {"requests": 3000, "duration_s": 2.0, "non2xx": 5, "connect": 1, "read": 2, '
        '"write": 0, "timeout": 3, "p50": 1.5, "p90": 2.5, "p99": 9.0, "p999": 12.0, '
        '"max": 20.0, "mean": 1.9}'
    )
    out = lg.parse_wrk("Running 2s test\n" + line + "\n")
    assert out["rps"] == 1500 and out["socket_errors"] == 6 and out["p99"] == 9.0
    with pytest.raises(RuntimeError, match="no figures"):
        lg.parse_wrk("Running 2s test\n")


def test_parse_hey_reads_rate_percentiles_statuses_and_errors() -> None:
    out = lg.parse_hey(HEY_OUTPUT)
    assert out["rps"] == pytest.approx(499.6397)
    assert (out["p50"], out["p90"], out["p99"]) == pytest.approx((2.8, 5.1, 12.0))
    assert out["requests"] == 4994 and out["non2xx"] == 4 and out["socket_errors"] == 2


def test_worker_counts_prefer_a_request_counter_and_sum_other_labels() -> None:
    text = (
        "# TYPE fmnist_worker_images_total counter\n"
        'fmnist_worker_images_total{worker="1"} 500.0\n'
        'fmnist_worker_requests_total{endpoint="/classify",worker="1"} 10.0\n'
        'fmnist_worker_requests_total{endpoint="/classify_npy",worker="1"} 2.0\n'
        'fmnist_worker_requests_total{endpoint="/classify",worker="2"} 30.0\n'
        'fmnist_predictions_total{model="baseline"} 42.0\n'
    )
    assert lg.parse_worker_counts(text) == {"1": 12.0, "2": 30.0}
    assert lg.parse_worker_counts('fmnist_predictions_total{model="b"} 1.0\n') is None


BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_histogram_totals_sum_the_series_with_the_labels_asked_for() -> None:
    """Against prometheus-client's own exposition server: (sum, count) of one model's
    calls, of all of them, and None for a label value, a name or a server that is not there."""
    registry = CollectorRegistry()
    calls = Histogram("fmnist_inference_seconds", "calls", ["model"], registry=registry)
    calls.labels("baseline").observe(0.25)
    calls.labels("baseline").observe(0.5)
    calls.labels("deeper").observe(4.0)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        name = "fmnist_inference_seconds"
        assert lg.histogram_totals(url, name, model="baseline") == (0.75, 2.0)
        assert lg.histogram_totals(url, name) == (4.75, 3.0)
        assert lg.histogram_totals(url, name, model="other") is None
        assert lg.histogram_totals(url, "fmnist_other_seconds") is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert lg.histogram_totals(url, "fmnist_inference_seconds") is None


def test_tree_cpu_counts_live_and_reaped_descendants() -> None:
    """A parent that sleeps, one child that burns 0.3 s CPU and is reaped, one still busy."""
    parent_code = (
        "import subprocess, sys, time\n"
        f"a = subprocess.Popen([sys.executable, '-c', {BUSY.format(s=30)!r}])\n"
        f"subprocess.run([sys.executable, '-c', {BUSY.format(s=0.3)!r}])\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent_code], start_new_session=True)
    try:
        time.sleep(0.3)
        meter = lg.CpuMeter(proc.pid, "http://127.0.0.1:1", workers=2).__enter__()
        before = lg.tree_cpu(proc.pid)
        deadline = time.monotonic() + 20
        while sum(lg.tree_cpu(proc.pid).values()) - sum(before.values()) < 0.6:
            assert time.monotonic() < deadline, "the busy children got no CPU"
            time.sleep(0.1)
        out = meter.result(requests=100, client_cpu_s=0.0)
        assert out["server_cpu_s"] >= 0.6 and out["cpu_ms_per_req"] >= 6
        assert 0 < out["cores_busy"] <= 2.5 and out["share_from"] == "cpu"
        assert out["busiest_share"] is not None and out["busiest_share"] > 0.5
    finally:
        lg.stop_group(proc)


def point(server: str, request: str, conns: int, rps: float, **kw: Any) -> dict[str, Any]:
    base = {"p50": 2.0, "p90": 4.0, "p99": 9.0, "non2xx": 0, "socket_errors": 0}
    base |= {"cpu_ms_per_req": 0.6, "cores_busy": 1.9, "client_cores": 0.1, "other_cores": 0.0}
    base |= {"busiest_share": 0.55, "share_from": "metrics"}
    return {"server": server, "request": request, "conns": conns, "rps": rps, **base, **kw}


def test_report_has_ratios_and_goals_from_the_same_run() -> None:
    args = SimpleNamespace(
        fixed_fraction=0.5,
        fixed_workers=32,
        batch_connections=4,
        workers=2,
        idle_requests=20,
        burst_connections=256,
        burst=20.0,
    )
    bench = SimpleNamespace(
        args=args,
        points=[
            point("service", "multipart PNG", 32, 3600.0),
            point("service", "multipart PNG", 256, 3000.0, busiest_share=0.7),
            point("BentoML reference", "raw PNG body", 32, 500.0, busiest_share=None),
            point("KServe", "v2 JSON", 32, 3000.0, other_cores=0.6),
        ],
        fixed=[
            point(
                "service",
                "multipart PNG",
                0,
                1800.0,
                offered_rps=1800.0,
                p99=8.0,
                arrivals="Poisson (wrk)",
            ),
            point(
                "service",
                "multipart PNG",
                0,
                1790.0,
                offered_rps=1800.0,
                p99=14.0,
                arrivals="in step (hey)",
            ),
        ],
        extra={
            "batch": point("service", "npy", 4, 200.0, images_per_s=12800.0),
            "batch_raw": point(
                "service",
                "npy raw",
                4,
                220.0,
                images_per_s=10400.0,
                inproc_around=[15000, 17000],
                cpu_ms_per_req=9.0,
                model_ms_per_call=7.5,
                model_calls_per_req=1.0,
            ),
            "batch_v2": point(
                "service", "v2 binary", 4, 250.0, images_per_s=12000.0, inproc_around=[16000]
            ),
            "inproc": {1: 10000.0, 2: 16000.0},
            "batch_source": "test images",
            "recovery": {
                "before": {"median_ms": 4.0, "max_ms": 6.0, "non200": 0},
                "burst": point("service", "multipart PNG", 256, 3000.0),
                "5 s after": {"median_ms": 5.0, "max_ms": 9.0, "non200": 0},
            },
        },
        notes=["KServe peer skipped: test"],
    )
    text = serve_report.report(bench, {"header": ["a header line"]})
    assert "| service | multipart PNG | 32 | 3,600 |" in text
    assert "| 1.20× | 7.20× |" in text  # vs KServe 3,000 and the reference 500, same conns
    assert "| throughput vs KServe, 32 conns (≥ 1×) | 1.20× | met |" in text
    assert "| busiest worker's share, 256 conns (≤ 60 %) | 70% (metrics) | **not met** |" in text
    assert "| p99 at a fixed 50 % of capacity (≤ 10 ms) | 8.0 ms | met |" in text
    assert "| p99 at 50 % of capacity, connections in step | 14.0 ms | — |" in text
    assert "| service | multipart PNG | Poisson (wrk) | 1,800 | 1,800 |" in text
    assert "| idle latency 5 s after the burst vs before (≤ 2×) | 1.2× | met |" in text
    assert "batch 64 (≥ 70 %; vs 2 processes) | 80% | met |" in text
    # The raw point's ratio is against onnxruntime measured around it: 10,400 / 16,000.
    assert "batch 64, raw .npy body (≥ 70 %; vs 2 processes) | 65% | **not met** |" in text
    assert (
        "after the raw .npy body point | 16,000 (15,000 and 17,000; 8.00 ms per call of 64)" in text
    )
    # Where the server's time went, from the service's model-call histogram.
    assert "0.141 ms/image = 9.00 ms/request, of which the model call 7.50 ms (wall time), " in text
    assert text.count("of which the model call") == 1  # the other points did not read it
    assert "| `/v2/models/{name}/infer`, v2 binary tensors, 4 connections" in text
    assert "batch 64, v2 binary tensors (≥ 70 %; vs 2 processes) | 75% | met |" in text
    assert "(as the service) | 16,000 | 80% / 65% / 75% |" in text
    assert "| `/classify_npy`, raw .npy body, 4 connections" in text
    assert "**Measured under contention**" in text and "- KServe peer skipped: test" in text


# ---------------------------------------------------------------- slow: real processes
@pytest.fixture
def stub_server() -> Iterator[str]:
    """HTTP/1.1 keep-alive server: 200 on /ok, 503 elsewhere."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 65536  # the answer in one write (no Nagle + delayed-ACK 40 ms stall)

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.slow
@needs_tools
def test_wrk_and_hey_against_a_stub(stub_server: str, tmp_path: Path) -> None:
    ok = lg.Request("ok", "/ok", b"x" * 100, "application/octet-stream")
    bad = lg.Request("bad", "/bad", b"x", "application/octet-stream")
    body, script = ok.files(tmp_path)
    w = lg.run_wrk(stub_server + ok.path, script, connections=4, seconds=1)
    assert w["requests"] > 10 and w["non2xx"] == 0 and 0 < w["p50"] <= w["p99"]
    _, bad_script = bad.files(tmp_path)
    assert lg.run_wrk(stub_server + bad.path, bad_script, 2, 1)["non2xx"] > 0
    h = lg.run_hey(stub_server, ok, body, rate=200, seconds=1.5, workers=4)
    assert 100 <= h["requests"] <= 400 and h["non2xx"] == 0 and "p50" in h
    # Poisson arrivals at 200 req/s over 4 connections: ~400 in 2 s, where the same 4
    # connections in a closed loop answer thousands.
    paced = lg.run_wrk_paced(stub_server + ok.path, script, 200, 2, connections=4, calibrate_s=1)
    assert 250 <= paced["requests"] <= 550 and paced["non2xx"] == 0, paced
    assert paced["offered_rps"] == 200 and paced["arrivals"] == "Poisson (wrk)"
    assert 0 < paced["p50"] <= paced["p90"] <= paced["p99"]
    assert w["rps"] > 3 * paced["rps"]


@pytest.mark.slow
@needs_tools
def test_a_tiny_run_of_the_benchmark(
    onnx_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import serve_throughput

    out_json = tmp_path / "bench.json"
    argv = ["--onnx-dir", str(onnx_models["baseline"].parent), "--seconds", "1"]
    argv += ["--connections", "1", "4", "--skip-peers", "--burst", "1", "--recovery-at", "1"]
    argv += ["--idle-requests", "3", "--warmup", "0.5", "--settle", "0", "--json", str(out_json)]
    assert serve_throughput.main(argv) == 0
    text = capsys.readouterr().out
    assert "| service | multipart PNG | 4 |" in text and "| goal (issue 11) |" in text
    assert "Recovery" in text and "in-process onnxruntime" in text
    # Each batch point read the service's model-call histogram: one call of 64 a request.
    # (Its times are wall times: on a loaded machine a call can outlast a request's CPU.)
    result = json.loads(out_json.read_text())
    for key in ("batch", "batch_raw", "batch_v2"):
        p = result[key]
        assert p["model_calls_per_req"] == pytest.approx(1.0, abs=0.05), key
        assert 0 < p["model_ms_per_call"] < 1000, key
    assert text.count("of which the model call") == 3


def test_onnx_cost_compares_files_by_their_median(
    onnx_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/onnx_cost.py: one row per file, the first as the reference (1.00×)."""
    from benchmarks.onnx_cost import main as onnx_cost

    files = [onnx_models["baseline"], onnx_models["deeper"]]
    out = tmp_path / "cost.json"
    assert onnx_cost([*map(str, files), "--calls", "2", "--rounds", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| baseline.onnx |" in table and "| deeper.onnx |" in table and "1.00×" in table
    record = json.loads(out.read_text())
    assert [len(f["ms_per_call"]) for f in record["files"]] == [2, 2]
    assert all(f["median_ms"] > 0 for f in record["files"])
    assert onnx_cost([str(tmp_path / "missing.onnx")]) == 2
