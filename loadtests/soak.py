"""Soak: moderate load for 10 minutes; no errors, and server memory stays flat after warm-up.

    python -m loadtests.soak                       # or: make soak  (16 users, 10 min)
    python -m loadtests.soak --users 8 --duration 3m --warmup 30s --url http://127.0.0.1:3000

Starts the service unless ``--url`` is given, runs locust headless for warm-up + duration,
and samples the resident memory (RSS) of every server process (the BentoML arbiter and
all workers) every ``--sample-every`` seconds into ``rss.csv``. It passes when no request
failed and the total RSS at the end is at most ``--max-growth`` above the total at the end
of the warm-up. Writes ``soak.json`` under ``--out``. A benchmark, not a CI job.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtests.run import ROOT, environment, locust_command, locust_env, seconds, service_at
from loadtests.server import rss_bytes, scrape, server_figures, server_processes
from loadtests.thresholds import Thresholds, check_thresholds, read_stats_csv

log = logging.getLogger("loadtests.soak")
# Moderate load: users think 0.1-0.3 s between requests, so the service runs well below
# saturation (the sweep in docs/performance.md saturates 2 cores at about 8 busy users).
MODERATE = ("--wait-min", "0.1", "--wait-max", "0.3")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--url", help="soak this running service instead of starting one")
    p.add_argument("--model-dir", type=Path, default=ROOT / "artifacts" / "onnx")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--duration", default="10m", help="measured time after the warm-up")
    p.add_argument("--warmup", default="60s")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument(
        "--max-growth",
        type=float,
        default=0.10,
        help="largest RSS growth after warm-up, as a fraction",
    )
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "soak")
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument(
        "locust_args", nargs="*", help=f"after --: passed to locust (default: {' '.join(MODERATE)})"
    )
    args = p.parse_args(argv)
    args.locust_args = args.locust_args or list(MODERATE)
    return args


def memory_growth(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, float]:
    """RSS (MB) at the first sample at/after the warm-up, at the end, and the growth."""
    after = [(t, mb) for t, mb in samples if t >= warmup_s]
    if not after:
        raise ValueError("no RSS sample after the warm-up; is the run shorter than --warmup?")
    start, end = after[0][1], after[-1][1]
    return {
        "rss_mb_after_warmup": start,
        "rss_mb_end": end,
        "rss_mb_peak": max(mb for _, mb in after),
        "growth": (end - start) / start,
    }


def soak(url: str, args: argparse.Namespace) -> dict[str, Any]:
    warmup_s, total_s = seconds(args.warmup), seconds(args.warmup) + seconds(args.duration)
    prefix = args.out / "soak"
    command = locust_command(url, args.users, f"{int(total_s)}s", prefix, 0.0, args.locust_args)
    processes = server_processes(url)
    log.info(
        "soak: %d users for %s + %s warm-up; %d server processes",
        args.users,
        args.duration,
        args.warmup,
        len(processes),
    )
    before = scrape(url)
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    with open(f"{prefix}_locust.log", "wb") as out, open(args.out / "rss.csv", "w") as rss_csv:
        rss_csv.write("seconds,rss_mb," + ",".join(f"pid{p.pid}" for p in processes) + "\n")
        locust = subprocess.Popen(
            command, cwd=ROOT, env=locust_env(), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            while locust.poll() is None:
                elapsed = time.monotonic() - start
                if elapsed > total_s + 120:
                    raise TimeoutError("locust ran far past its run time")
                per_pid = rss_bytes(processes)
                samples.append((elapsed, sum(per_pid.values()) / 1e6))
                rss_csv.write(
                    f"{elapsed:.0f},{samples[-1][1]:.1f},"
                    + ",".join(f"{per_pid.get(p.pid, 0) / 1e6:.1f}" for p in processes)
                    + "\n"
                )
                rss_csv.flush()
                time.sleep(args.sample_every)
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait(30)
    samples.append((time.monotonic() - start, sum(rss_bytes(processes).values()) / 1e6))
    rows = read_stats_csv(f"{prefix}_stats.csv")
    # Only errors count here; latency under a long run is reported, not judged.
    checks = check_thresholds(rows, Thresholds(p99_ms=float("inf")))
    memory = memory_growth(samples, warmup_s)
    errors_ok = all(c.ok for c in checks)
    return {
        "users": args.users,
        "warmup": args.warmup,
        "duration": args.duration,
        "rows": {name: asdict(row) for name, row in rows.items()},
        "server": server_figures(before, scrape(url)),
        "memory": memory,
        "max_growth": args.max_growth,
        "checks": [asdict(c) for c in checks],
        "passed": errors_ok and memory["growth"] <= args.max_growth,
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with service_at(args) as url:
            result = soak(url, args)
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    result["environment"] = environment()
    (args.out / "soak.json").write_text(json.dumps(result, indent=2))
    total, memory = result["rows"]["Aggregated"], result["memory"]
    print(
        f"soak: {total['requests']} requests, {total['failures']} failed, "
        f"{total['rps']:.1f} requests/s, /classify p99 "
        f"{result['rows'].get('/classify', {}).get('p99', float('nan')):.0f} ms"
    )
    print(
        f"soak: server RSS {memory['rss_mb_after_warmup']:.0f} MB after warm-up -> "
        f"{memory['rss_mb_end']:.0f} MB at the end ({memory['growth']:+.1%}, "
        f"limit {args.max_growth:+.0%}); peak {memory['rss_mb_peak']:.0f} MB"
    )
    print("soak: PASS" if result["passed"] else "soak: FAIL")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
