"""Load-test tooling: payloads, the threshold checker, the report, and a short real run.

The fast tests need no server. The slow one starts ``bentoml serve`` on a free loopback
port with the fixture ONNX models and runs locust headless for about 12 seconds.
"""

from __future__ import annotations

import csv
import email.parser
import importlib.util
import io
import json
import math
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from loadtests import payloads, report, run, soak, thresholds
from loadtests.launch import free_port, wait_ready
from loadtests.server import http_get, scrape_totals, server_figures  # noqa: E402

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def stats_line(name: str, requests: int, failures: int, rps: float, p99: str | float) -> str:
    kind = "" if name == "Aggregated" else "POST"
    return (
        f"{kind},{name},{requests},{failures},20,25.5,2.1,300.0,410.0,{rps},0.0,"
        f"20,25,30,35,50,70,90,{p99},200,300,300"
    )


def write_stats(path: Path, *lines: str) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


@pytest.fixture
def passing_csv(tmp_path: Path) -> Path:
    return write_stats(
        tmp_path / "run_stats.csv",
        stats_line("/classify", 900, 0, 90.0, 80),
        stats_line("/classify_batch", 100, 0, 10.0, 400),
        stats_line("Aggregated", 1000, 0, 100.0, 300),
    )


def test_thresholds_pass_on_a_clean_fast_run(passing_csv: Path) -> None:
    passed, checks = thresholds.evaluate(passing_csv, thresholds.Thresholds(0.0, 100.0, 50.0))
    assert passed, [str(c) for c in checks]
    assert {c.what for c in checks} >= {"error rate", "throughput [requests/s]"}


@pytest.mark.parametrize(
    ("limits", "missed"),
    [
        (thresholds.Thresholds(p99_ms=79.0), "p99 of /classify [ms]"),
        (thresholds.Thresholds(min_rps=100.1), "throughput [requests/s]"),
        (thresholds.Thresholds(p99_name="/no-such-row"), "p99 of /no-such-row [ms]"),
    ],
)
def test_thresholds_fail_on_each_missed_target(
    passing_csv: Path, limits: thresholds.Thresholds, missed: str
) -> None:
    passed, checks = thresholds.evaluate(passing_csv, limits)
    assert not passed
    assert [c.what for c in checks if not c.ok] == [missed]


def test_a_single_failed_request_fails_the_default_error_target(tmp_path: Path) -> None:
    path = write_stats(
        tmp_path / "s_stats.csv",
        stats_line("/classify", 999, 1, 90.0, 50),
        stats_line("Aggregated", 999, 1, 90.0, 50),
    )
    passed, checks = thresholds.evaluate(path, thresholds.Thresholds())
    assert not passed
    assert [c.what for c in checks if not c.ok] == ["error rate"]
    # A tolerance, when configured, lets it through.
    assert thresholds.evaluate(path, thresholds.Thresholds(max_error_rate=0.01))[0]


def test_an_empty_run_fails_and_na_percentiles_fail(tmp_path: Path) -> None:
    path = write_stats(
        tmp_path / "e_stats.csv",
        stats_line("/classify", 0, 0, 0.0, "N/A"),
        stats_line("Aggregated", 0, 0, 0.0, "N/A"),
    )
    passed, checks = thresholds.evaluate(path, thresholds.Thresholds())
    assert not passed
    assert {c.what for c in checks if not c.ok} == {
        "requests",
        "error rate",
        "p99 of /classify [ms]",
    }


def test_thresholds_cli_exit_codes(passing_csv: Path, tmp_path: Path) -> None:
    assert thresholds.main([str(passing_csv), "--p99-ms", "100", "--min-rps", "50"]) == 0
    assert thresholds.main([str(passing_csv), "--p99-ms", "10"]) == 1
    assert thresholds.main([str(tmp_path / "missing.csv")]) == 2
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert thresholds.main([str(tmp_path / "other.csv")]) == 2


def test_model_mix_is_parsed_and_normalised() -> None:
    assert payloads.parse_model_mix("baseline=3,deeper=1") == {"baseline": 0.75, "deeper": 0.25}
    assert payloads.parse_model_mix("deeper") == {"deeper": 1.0}
    for bad in ("resnet=1", "baseline=x", "baseline=0", ""):
        with pytest.raises(ValueError):
            payloads.parse_model_mix(bad)


def multipart_fields(body: payloads.Body) -> dict[str, bytes]:
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + body.data
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.get_payload()
    }


def test_payload_pool_holds_well_formed_requests_of_real_images() -> None:
    from PIL import Image

    images = np.random.default_rng(1).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    pool = payloads.build_pool(images, n_singles=8, n_batches=6, min_batch=16, max_batch=256)
    single = pool.singles["deeper"][3]
    fields = multipart_fields(single)
    assert fields["model"] == b"deeper"
    decoded = np.asarray(Image.open(io.BytesIO(fields["image"])))
    assert np.array_equal(decoded, images[3])
    sizes = [b.images for b in pool.batches["baseline"]]
    assert min(sizes) == 16 and max(sizes) == 256
    as_json = next(b for b in pool.batches["baseline"] if b.path == "/classify_batch")
    assert np.asarray(json.loads(as_json.data)["pixels"]).shape == (as_json.images, 28, 28)
    as_npy = next(b for b in pool.batches["baseline"] if b.path == "/classify_npy")
    array = np.load(io.BytesIO(multipart_fields(as_npy)["array"]))
    assert array.shape == (as_npy.images, 28, 28) and array.dtype == np.uint8
    reasons = {b.reason for b in payloads.bad_requests(images[0])}
    assert reasons == {"corrupt_image", "wrong_shape", "unknown_model"}


def test_run_time_strings_and_memory_growth() -> None:
    assert run.seconds("90") == 90 and run.seconds("45s") == 45
    assert run.seconds("1h2m3s") == 3723
    with pytest.raises(ValueError):
        run.seconds("ten minutes")
    growth = soak.memory_growth([(0, 100.0), (30, 200.0), (60, 210.0), (90, 220.0)], 30)
    assert growth["rss_mb_after_warmup"] == 200.0 and math.isclose(growth["growth"], 0.10)
    with pytest.raises(ValueError):
        soak.memory_growth([(0, 100.0)], 30)


def test_server_figures_from_two_scrapes() -> None:
    before = 'fmnist_inference_seconds_count{model="baseline"} 10\n'
    after = "\n".join(
        [
            "# HELP fmnist_inference_seconds onnxruntime run time",
            'fmnist_inference_seconds_count{model="baseline"} 30',
            'fmnist_inference_seconds_count{model="deeper"} 10',
            'fmnist_inference_seconds_sum{model="baseline"} 0.06',
            'fmnist_inference_batch_size_sum{model="baseline"} 300',
        ]
    )
    assert scrape_totals(after, ("fmnist_inference_seconds_count",)) == {
        "fmnist_inference_seconds_count": 40.0
    }
    figures = server_figures(before, after)
    assert figures["onnx_calls"] == 30 and figures["mean_batch"] == 10.0
    assert math.isclose(figures["mean_inference_ms"], 2.0)


class _Answers(BaseHTTPRequestHandler):
    """GET /<status> answers that status with a body naming it; /cut closes without one."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/cut":
            self.close_connection = True
            return
        body = f"status {self.path[1:]} é".encode()
        self.send_response(int(self.path[1:]))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def answering() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_get_gives_status_and_body_even_for_errors_and_0_when_nothing_answers(
    answering: str,
) -> None:
    assert http_get(f"{answering}/200") == (200, "status 200 é")
    assert http_get(f"{answering}/404") == (404, "status 404 é")
    assert http_get(f"{answering}/503") == (503, "status 503 é")
    assert http_get(f"{answering}/cut") == (0, "")
    assert http_get(f"http://127.0.0.1:{free_port()}/metrics", timeout=2) == (0, "")


def test_wait_ready_waits_for_a_200_and_stops_when_the_server_dies(answering: str) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        wait_ready(f"{answering}/200", proc, 5)
        with pytest.raises(TimeoutError, match="not ready within 1s"):
            wait_ready(f"{answering}/503", proc, 1)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(RuntimeError, match="server exited with code -9"):
        wait_ready(f"{answering}/200", proc, 5)


def test_report_table_and_plot(passing_csv: Path, tmp_path: Path) -> None:
    rows = thresholds.read_stats_csv(passing_csv)
    run_result = {
        "users": 8,
        "rows": {k: vars(v) for k, v in rows.items()},
        "server": {"images": 5000.0, "mean_batch": 4.0, "mean_inference_ms": 1.5},
    }
    summary = {"runs": [run_result, {**run_result, "users": 32}]}
    table = report.markdown_table(summary)
    assert "| 8 | 100.0 | 500 | 20 / 70 / 80 | 300 | 0.00% | 4.0 | 1.50 |" in table
    report.write_report(summary, tmp_path)
    assert (tmp_path / "summary.md").read_text().count("\n| 32 |") == 1
    pytest.importorskip("matplotlib")
    assert (tmp_path / report.PLOT_NAME).stat().st_size > 1000


def test_latency_plot_labels_every_point_inside_its_axes() -> None:
    """One user is "1 user", and the label of the busiest point is not cut off."""
    pytest.importorskip("matplotlib")
    runs = [
        {
            "users": users,
            "rows": {
                thresholds.AGGREGATED: {"requests": rps * 45, "rps": rps},
                thresholds.SINGLE_NAME: {"p50": p99 / 4, "p95": p99 / 2, "p99": p99},
            },
            "server": {"images": images * 45},
        }
        for users, rps, images, p99 in (
            (1, 124.6, 2321, 11),
            (8, 112.8, 2161, 340),
            (32, 174.5, 3288, 710),
            (64, 200.8, 3811, 1000),
        )
    ]
    fig = report.latency_figure({"runs": runs})
    assert fig is not None
    fig.canvas.draw()
    (ax,) = fig.axes
    labels = [t for t in ax.texts]
    assert [t.get_text() for t in labels] == ["1 user", "8 users", "32 users", "64 users"]
    box = ax.get_window_extent()
    for label in labels:
        extent = label.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, label.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, label.get_text()


@pytest.mark.slow
def test_short_load_test_against_a_real_service(
    onnx_models: dict[str, Path], synthetic_data_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("bentoml")
    # Only look for locust: importing it here would gevent-patch the test process.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (the loadtest extra)")
    out = tmp_path / "loadtest"
    code = run.main(
        [
            "--model-dir",
            str(onnx_models["baseline"].parent),
            "--users",
            "4",
            "--run-time",
            "12s",
            "--out",
            str(out),
            "--p99-ms",
            "5000",
            "--min-rps",
            "2",
            "--",
            "--data-dir",
            str(synthetic_data_dir),
            "--bad-share",
            "0.1",
        ]
    )
    stats = out / "u4_stats.csv"
    rows = thresholds.read_stats_csv(stats)
    failures = (out / "u4_failures.csv").read_text()
    assert code == 0, failures
    # Bad requests answered with their 4xx count as successes; every scenario ran.
    bad = [r for name, r in rows.items() if "[bad:" in name]
    assert bad and sum(r.requests for r in bad) > 0 and all(r.failures == 0 for r in bad)
    assert {"/classify", "/classify_batch", "/classify_npy"} <= set(rows)
    assert (out / "u4.html").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["server"]["onnx_calls"] > 0
    assert summary["runs"][0]["rss_mb"]["after"] > 0
    # The same numbers fail an impossible target, and the CLI says so with exit code 1.
    assert thresholds.main([str(stats), "--min-rps", "1e9"]) == 1
    with open(stats, newline="") as f:
        assert any(r["Name"] == "Aggregated" for r in csv.DictReader(f))


def test_wait_for_workers_returns_once_every_worker_has_started_and_names_the_missing_one(
    tmp_path: Path,
) -> None:
    from loadtests.launch import wait_for_workers

    log = tmp_path / "serve.log"
    first = "2026-12-06T04:36:35+0000 [INFO] [entry_service:fmnist:1] Service fmnist initialized\n"
    log.write_text(first)
    with pytest.raises(TimeoutError, match=r"entry_service:fmnist:2\]") as caught:
        wait_for_workers(log, 2, timeout_s=0.3)
    assert "fmnist:1]" not in str(caught.value)
    log.write_text(first + first.replace("fmnist:1]", "fmnist:2]"))
    wait_for_workers(log, 2, timeout_s=0.3)  # returns: both have started
