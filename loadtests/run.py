"""One-command load test: start the service, run locust headless, check the targets.

    python -m loadtests.run                                   # 32 users, 60 s, p99 <= 100 ms
    python -m loadtests.run --users 1,8,32,64 --run-time 45s --no-check   # the sweep
    python -m loadtests.run --url http://127.0.0.1:3000 --users 8 --run-time 20s
    python -m loadtests.run --users 32 -- --model-mix baseline=1 --batch-share 0.1

Unless ``--url`` is given it starts ``bentoml serve`` on a free loopback port (models from
``--model-dir``, default ``artifacts/onnx``; service settings from the ``FMNIST_*``
environment) and stops it at the end. For each user count it saves locust's CSV and HTML
under ``--out`` (``u<N>_stats.csv``, ``u<N>.html``), scrapes ``/metrics`` before and after
for the server-side batch size and inference time, records the server's resident memory,
and writes ``summary.json`` (+ ``summary.md`` and a latency-throughput plot). Arguments
after ``--`` go to locust (scenario options: see loadtests/locustfile.py).
Exit status: 0 all targets met, 1 a target missed, 2 the run itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from fmnist.contract import ONNX_SUFFIX
from loadtests.report import write_report
from loadtests.server import rss_bytes, scrape, server_figures, server_processes
from loadtests.thresholds import (
    add_threshold_arguments,
    check_thresholds,
    read_stats_csv,
    thresholds_from,
)

log = logging.getLogger("loadtests.run")
ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--url", help="test this running service instead of starting one")
    p.add_argument(
        "--model-dir",
        type=Path,
        default=ROOT / "artifacts" / "onnx",
        help="ONNX folder for the started service (FMNIST_MODEL_DIR)",
    )
    p.add_argument("--users", default="32", help="user count, or a comma list for a sweep")
    p.add_argument(
        "--spawn-rate",
        type=float,
        default=0.0,
        help="users started per second (0: 4/s, at most all users in one second)",
    )
    p.add_argument("--run-time", default="60s", help="locust run time per user count")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "loadtest")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="measure only; do not fail on missed targets (the sweep, the soak)",
    )
    p.add_argument("--ready-timeout", type=float, default=120.0)
    add_threshold_arguments(p)
    return p.parse_args(argv), extra


def seconds(run_time: str) -> float:
    """locust's time string (``90``, ``45s``, ``2m``, ``1h30m``) in seconds."""
    total, number = 0.0, ""
    for char in run_time.strip():
        if char.isdigit() or char == ".":
            number += char
        elif char in "hms" and number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise ValueError(f"bad run time {run_time!r} (expected e.g. 45s, 2m, 1h30m)")
    return total + (float(number) if number else 0.0)


@contextlib.contextmanager
def service_at(args: argparse.Namespace) -> Iterator[str]:
    """The URL to test: ``--url`` as given, or a freshly started local service."""
    if args.url:
        yield args.url.rstrip("/")
        return
    from loadtests.launch import bentoml_server  # needs bentoml; not with --url

    env = {}
    if args.model_dir:
        if not any(args.model_dir.glob(f"*{ONNX_SUFFIX}")):
            raise FileNotFoundError(f"{args.model_dir} holds no ONNX model (see --model-dir)")
        env["FMNIST_MODEL_DIR"] = str(args.model_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    with bentoml_server(
        env, log_path=args.out / "service.log", ready_timeout_s=args.ready_timeout
    ) as url:
        yield url


def locust_command(
    url: str, users: int, run_time: str, prefix: Path, spawn_rate: float, extra: list[str]
) -> list[str]:
    """The headless locust command line that writes ``<prefix>_stats.csv`` and ``<prefix>.html``."""
    # Users arriving over seconds spread their keep-alive connections over the workers;
    # all at once, one worker accepts nearly all of them (docs/performance.md).
    spawn = spawn_rate or min(4.0, max(1.0, float(users)))
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(spawn),
        "-t",
        run_time,
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--loglevel",
        "WARNING",
        *extra,
    ]


def locust_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_locust(url: str, users: int, args: argparse.Namespace, extra: list[str]) -> Path:
    """One headless locust run; returns the path of its ``_stats.csv``."""
    prefix = args.out / f"u{users}"
    command = locust_command(url, users, args.run_time, prefix, args.spawn_rate, extra)
    limit = seconds(args.run_time) + 120  # bounded even if locust hangs
    log.info("locust: %d users for %s against %s", users, args.run_time, url)
    with open(f"{prefix}_locust.log", "wb") as out:
        # locust exits 1 when any request failed; the thresholds decide instead.
        subprocess.run(
            command,
            cwd=ROOT,
            env=locust_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=limit,
            check=False,
        )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        raise RuntimeError(f"locust wrote no {stats}; see {prefix}_locust.log")
    return stats


def training_running() -> bool:
    """Whether a training job shares the CPUs (it skews every figure)."""
    for p in psutil.process_iter(["cmdline"]):
        if any("fmnist-train" in part for part in (p.info["cmdline"] or [])):
            return True
    return False


def environment() -> dict[str, Any]:
    """Hardware, versions, service settings and concurrent load: what a reader needs."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("bentoml", "onnxruntime", "locust", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9),
        "python": platform.python_version(),
        "versions": versions,
        "settings": {k: v for k, v in os.environ.items() if k.startswith("FMNIST_")},
        "training_job_running": training_running(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def measure(url: str, users: int, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    processes = server_processes(url)
    before, rss_before = scrape(url), rss_bytes(processes)
    stats_csv = run_locust(url, users, args, extra)
    after, rss_after = scrape(url), rss_bytes(processes)
    rows = read_stats_csv(stats_csv)
    checks = check_thresholds(rows, thresholds_from(args))
    return {
        "users": users,
        "run_time": args.run_time,
        "stats_csv": str(stats_csv),
        "rows": {name: asdict(row) for name, row in rows.items()},
        "server": server_figures(before, after),
        "rss_mb": {
            "before": sum(rss_before.values()) / 1e6,
            "after": sum(rss_after.values()) / 1e6,
        },
        "checks": [asdict(c) for c in checks],
        "passed": all(c.ok for c in checks),
        "load_average_1m_end": round(os.getloadavg()[0], 2),
        "training_job_running_end": training_running(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    args, extra = parse_args(argv)
    try:
        user_counts = [int(u) for u in args.users.split(",") if u.strip()]
        seconds(args.run_time)
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "locust_args": extra,
        "runs": [],
    }
    try:
        with service_at(args) as url:
            for users in user_counts:
                result = measure(url, users, args, extra)
                summary["runs"].append(result)
                for check in result["checks"]:
                    print(
                        f"loadtest u={users}: {check['what']} = {check['value']:.4g} "
                        f"({check['limit']}) {'ok' if check['ok'] else 'MISSED'}"
                    )
    except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(summary, args.out)
    print(f"loadtest: reports in {args.out} (summary.md, summary.json, u<N>.html)")
    passed = all(run["passed"] for run in summary["runs"])
    if args.no_check:
        return 0
    print("loadtest: PASS" if passed else "loadtest: FAIL (a target was missed)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
