"""``fmnist-eval`` end to end: exit codes, one-line errors, Ctrl-C, and the report it writes.

The slow tests run the CLI against the ``fake_service`` fixture (conftest.py), a real HTTP
server on 127.0.0.1 that speaks docs/api.md with onnxruntime answers from the fixture models.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from evaluation import cli
from evaluation.client import RetryPolicy, ServiceClient, ServiceUnavailable
from evaluation.run import EvalConfig
from fmnist.dataset import load_test_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_dir(onnx_models: dict[str, Path]) -> Path:
    return onnx_models["baseline"].parent


def cli_args(url: str, out: Path, data_dir: Path, onnx_dir: Path, *extra: str) -> list[str]:
    return [
        "--url",
        url,
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        "--onnx-dir",
        str(onnx_dir),
        "--skip-checksums",
        "--no-progress",
        "--retries",
        "4",
        "--backoff",
        "0.01",
        *extra,
    ]


def test_cli_reports_an_unreachable_service_in_one_line(
    dead_url: str, synthetic_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    rc = cli.main(cli_args(dead_url, out, synthetic_data_dir, tmp_path, "--retries", "2"))
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "unavailable" in err and dead_url in err
    assert "failed 2 times" in err and err.endswith("; no report written\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_a_missing_dataset_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    rc = cli.main(["--url", "http://127.0.0.1:9", "--out", str(out), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "t10k-images-idx3-ubyte" in err
    assert not out.exists()


def test_cli_rejects_a_zero_batch_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", "http://x", "--out", str(tmp_path / "r"), "--batch-size", "0"])
    assert info.value.code == 2
    assert "--batch-size must be at least 1, got 0" in capsys.readouterr().err


def test_cli_defaults_are_the_config_defaults() -> None:
    assert cli.parse_args(["--url", "http://x", "--out", "r"]) == EvalConfig("http://x", Path("r"))
    assert EvalConfig("u", Path("o")).retry == RetryPolicy(
        attempts=5, backoff=0.5, max_backoff=8, deadline=30
    )
    assert EvalConfig("u", Path("o")).timeout == 10


def test_help_says_how_long_a_silent_service_is_waited_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    deadline = EvalConfig("u", Path("o")).retry.deadline
    assert deadline < 60
    assert (
        f"a service that accepts connections but never answers is given up on after about "
        f"{deadline:g} seconds" in text
    )
    assert "--retry-for SECONDS" in text


@pytest.mark.parametrize("flag", ["--timeout", "--retry-for"])
def test_cli_rejects_a_zero_time(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", "http://x", "--out", str(tmp_path / "r"), flag, "0"])
    assert info.value.code == 2
    assert f"{flag} must be more than 0 seconds, got 0" in capsys.readouterr().err


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A real TCP server on loopback that accepts every connection and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # keep it open, read nothing, say nothing
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_the_retry_deadline_bounds_tries_that_would_each_wait_longer(silent_url: str) -> None:
    """10 s per try and 5 tries would wait about a minute; the 1 s deadline ends it."""

    async def go() -> None:
        retry = RetryPolicy(attempts=5, backoff=0.05, max_backoff=0.05, deadline=1.0)
        async with ServiceClient(silent_url, timeout=10.0, retry=retry) as client:
            await client.list_models()

    began = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"failed 1 times, last: no answer within 1\.0 s"):
        asyncio.run(go())
    assert time.monotonic() - began < 2.0


def test_cli_gives_up_on_a_silent_service_in_time_and_keeps_the_earlier_report(
    silent_url: str, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    """The real command, as a user runs it: WARNING lines for the retries at the default
    log level, then one error line within --retry-for, and the earlier report untouched."""
    out = tmp_path / "eval"
    out.mkdir()
    earlier = {"generator": "fmnist-eval", "created": "2026-01-02T03:04:05+00:00"}
    (out / "metrics.json").write_text(json.dumps(earlier))
    (out / "report.html").write_text("<p>the earlier report</p>")
    args = [
        *("--url", silent_url, "--out", str(out), "--data-dir", str(synthetic_data_dir)),
        *("--skip-checksums", "--no-progress", "--timeout", "0.5", "--retry-for", "2"),
        *("--retries", "10", "--backoff", "0.1"),
    ]
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - began
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("fmnist-eval: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert f"service at {silent_url} unavailable: GET /models failed" in errors[0]
    assert "no answer within 0.5 s" in errors[0]
    assert f"{out} still holds the earlier report of 2026-01-02T03:04:05+00:00" in errors[0]
    retries = [line for line in lines if " WARNING " in line]
    assert len(retries) >= 2 and len(retries) == len(lines) - 1, proc.stderr
    assert all(f"GET {silent_url}/models failed (" in line for line in retries)
    assert "try 2 of 10 in 0.10 s" in retries[0] and "try 3 of 10 in 0.20 s" in retries[1]
    # Gave up within --retry-for (2 s), not after 10 tries of 0.5 s and their waits (~55 s);
    # the rest of the wall time is the interpreter starting and loading the test set.
    gave_up = re.search(r"\(gave up after ([0-9.]+) s\)", errors[0])
    assert gave_up and 1.0 <= float(gave_up.group(1)) <= 2.1, errors[0]
    assert elapsed < 2 + 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no partial folder left
    assert json.loads((out / "metrics.json").read_text()) == earlier
    assert (out / "report.html").read_text() == "<p>the earlier report</p>"


def test_skip_checksums_and_its_deprecated_alias(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--url", "http://x", "--out", "r"]
    assert cli.parse_args(base).verify is True
    assert cli.parse_args([*base, "--skip-checksums"]).verify is False
    assert "deprecated" not in capsys.readouterr().err
    assert cli.parse_args([*base, "--no-verify"]).verify is False
    assert "--no-verify is deprecated; use --skip-checksums" in capsys.readouterr().err


def test_evaluation_imports_only_the_core_and_third_party() -> None:
    """evaluation may import fmnist, itself, the standard library and its extra's packages;
    never training, service, loadtests, benchmarks or scripts."""
    forbidden = {"training", "service", "loadtests", "benchmarks", "scripts", "tests"}
    found = []
    for path in sorted((REPO / "evaluation").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in forbidden
            ]
    assert found == []


def test_evaluation_imports_neither_torch_nor_bentoml() -> None:
    code = (
        "import evaluation.cli, evaluation.report, evaluation.plots, sys; "
        "bad = [m for m in ('torch', 'bentoml') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


@pytest.mark.slow
def test_cli_end_to_end_writes_a_complete_report(
    fake_service: Any,
    onnx_models: dict[str, Path],
    onnx_dir: Path,
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    split = load_test_set(synthetic_data_dir, verify=False)
    images, labels = split.images, split.labels
    out = tmp_path / "eval"
    svc = fake_service(fail_first=2)
    rc = cli.main(cli_args(svc.url, out, synthetic_data_dir, onnx_dir, "--batch-size", "64"))
    assert rc == 0, capsys.readouterr().err
    assert svc.failed == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "report.html",
            "report.md",
            "metrics.json",
            "predictions.csv",
            "per_class_accuracy.png",
            "reliability.png",
            "confusion_baseline.png",
            "confusion_deeper.png",
            "mistakes_baseline.png",
            "mistakes_deeper.png",
            "confused_pairs_baseline.png",
            "confused_pairs_deeper.png",
        ]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["eval"]  # no temporary folder left

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == {
        "folder": str(synthetic_data_dir),
        "images": 200,
        "official": False,
        "limit": None,
    }
    preds = {}
    for name, path in onnx_models.items():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probs = sess.run(["probabilities"], {"pixels": images.astype(np.float32)[:, None]})[0]
        preds[name] = probs.argmax(1)
        m = metrics["models"][name]
        assert m["metrics"]["accuracy"]["estimate"] == pytest.approx(
            float(np.mean(preds[name] == labels))
        )
        assert m["metrics"]["images"] == 200
        assert sum(map(sum, m["metrics"]["confusion"])) == 200
        assert m["serving_skew"]["ok"] is True and m["serving_skew"]["same_file"] is True
        assert m["serving_skew"]["argmax_mismatches"] == 0
        assert m["served_model"]["test_accuracy"] == pytest.approx(0.1)
    (pair,) = metrics["comparisons"]
    only_baseline = (preds["baseline"] == labels) & (preds["deeper"] != labels)
    assert pair["only_a"] == int(np.sum(only_baseline))
    assert pair["agreement"] == pytest.approx(float(np.mean(preds["baseline"] == preds["deeper"])))

    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 200
    assert rows[0].split(",")[:7] == [
        "index",
        "model",
        "true",
        "true_name",
        "predicted",
        "predicted_name",
        "confidence",
    ]
    assert rows[1].startswith(f"0,baseline,{labels[0]},")

    html = (out / "report.html").read_text()
    for level, anchor, heading in (
        (2, "summary", "Summary"),
        (2, "headline", "Headline"),
        (2, "against-the-study", "Against the study"),
        (2, "comparison-of-the-models", "Comparison of the models"),
        (3, "do-the-models-perform-the-same", "Do the models perform the same?"),
        (3, "calibration", "Calibration"),
        (2, "model-baseline", "Model: baseline"),
        (3, "deeper-most-confident-mistakes", "deeper: most confident mistakes"),
        (2, "serving-skew", "Serving skew"),
    ):
        assert f'<h{level} id="{anchor}">{heading}<' in html
        assert f'href="#{anchor}"' in html  # listed in the contents
    assert html.count('src="data:image/png;base64,') == 8
    assert '.png"' not in html  # self-contained: no link to a file next to it
    assert "not the official Fashion-MNIST test set" in html
    assert "McNemar" in html and "92.23%" in html
    md = (out / "report.md").read_text()
    assert "## Serving skew" in md and "](reliability.png)" in md
    stdout = capsys.readouterr().out
    assert "baseline: accuracy" in stdout and "McNemar p =" in stdout


@pytest.mark.slow
def test_cli_stops_at_a_4xx_and_writes_nothing(
    fake_service: Any,
    onnx_dir: Path,
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    svc = fake_service(max_batch=50)
    rc = cli.main(cli_args(svc.url, tmp_path / "eval", synthetic_data_dir, onnx_dir))
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "HTTP 413: batch_too_large" in err and "at most 50" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_names_the_served_models_when_asked_for_another(
    fake_service: Any,
    onnx_dir: Path,
    synthetic_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    svc = fake_service()
    args = cli_args(
        svc.url, tmp_path / "eval", synthetic_data_dir, onnx_dir, "--models", "baseline", "huge"
    )
    assert cli.main(args) == 1
    assert "does not serve huge; it offers baseline, deeper" in capsys.readouterr().err
    assert svc.npy_requests == 0


def _ctrl_c_reaches_the_child() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_report(
    fake_service: Any, onnx_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    svc = fake_service(hang=True)
    args = cli_args(svc.url, tmp_path / "eval", synthetic_data_dir, onnx_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluation.cli", *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As from a shell: SIGINT handled and unblocked in the child, whatever an earlier
        # test or library left in this process (a child inherits the mask and SIG_IGN).
        preexec_fn=_ctrl_c_reaches_the_child,
    )
    try:
        assert svc.hang.wait(60), "the CLI never sent a batch"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()  # closes the pipes too
    assert proc.returncode == 130, err
    assert "interrupted; no report written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_limit_and_single_model(
    fake_service: Any, onnx_dir: Path, synthetic_data_dir: Path, tmp_path: Path
) -> None:
    svc = fake_service()
    out = tmp_path / "eval"
    args = cli_args(
        svc.url,
        out,
        synthetic_data_dir,
        onnx_dir,
        "--models",
        "deeper",
        "--limit",
        "30",
        "--batch-size",
        "7",
    )
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["deeper"] and metrics["comparisons"] == []
    assert metrics["dataset"]["images"] == 30 and metrics["dataset"]["limit"] == 30
    assert metrics["models"]["deeper"]["throughput"]["requests"] == 5  # ceil(30 / 7)
    assert svc.npy_requests == 5
    assert "Only the first 30 test images" in (out / "report.md").read_text()
