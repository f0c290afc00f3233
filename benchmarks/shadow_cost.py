"""What shadow traffic costs: the service's throughput with shadow off, at full rate and at
10 % sampling, in one run, measured with wrk (C) and the server's own CPU time.

    .venv/bin/python benchmarks/shadow_cost.py --production artifacts/onnx/baseline.onnx \\
        --candidate /tmp/a1/onnx/baseline.onnx --rounds 3 --seconds 10 --json out.json

The two files are two versions of one model (the same ``model_name``): the first is
``production``, the second ``candidate``. Each round starts the service (2 workers) once per
setting, in turn, and sends single PNGs to ``POST /classify`` (production: shadowed) from
``--connections`` keep-alive connections for ``--seconds``. Per point: requests/s, p99,
server CPU per request, and from /metrics the images shadowed and dropped. The goals
(issue "Ship the next model safely"): full rate ≥ 45 % of off (the model work doubles),
10 % ≥ 90 %; judged on the median over rounds, and the count of rounds that met each.
Run it alone on the machine: anything else on the cores moves the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import (  # noqa: E402 (run as a script: its folder is on sys.path)
    CpuMeter,
    Request,
    histogram_totals,
    process_server,
    run_wrk,
    scrape,
)

from fmnist.contract import file_sha256  # noqa: E402
from fmnist.prometheus import metric_total  # noqa: E402
from loadtests.launch import free_port  # noqa: E402

SETTINGS = {"off": "0", "full": "1", "tenth": "0.1"}
GOALS = {"full": 0.45, "tenth": 0.90}


def png() -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def counter(url: str, name: str) -> float:
    return metric_total(scrape(url) or "", name)


def point(folder: Path, rate: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "FMNIST_MODEL_DIR": str(folder),
        "FMNIST_WORKERS": "2",
        "FMNIST_SHADOW_SAMPLE_RATE": rate,
        "BENTOML_HOME": str(work / "home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", "service.service:FashionMNISTService",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    request = Request("classify_png", "/classify?model=baseline", png(), "image/png")
    _, script = request.files(work)
    with process_server(cmd, env, url + "/readyz", work / f"serve-{rate}.log") as pid:
        target = url + request.path
        run_wrk(target, script, args.connections, 2)  # warm-up
        time.sleep(0.5)
        shadowed0 = counter(url, "fmnist_shadow_predictions_total")
        dropped0 = counter(url, "fmnist_shadow_dropped_total")
        meter = CpuMeter(pid, url, 2)
        with meter:
            wrk = run_wrk(target, script, args.connections, args.seconds)
        cpu = meter.result(wrk["requests"], wrk["client_cpu_s"])
        time.sleep(1.0)  # the shadow thread finishes what is queued
        shadow_s = histogram_totals(url, "fmnist_shadow_inference_seconds")
        if wrk.get("non2xx") or wrk["socket_errors"]:
            raise RuntimeError(f"shadow rate {rate}: failed requests under load: {wrk}")
        return {
            "rps": wrk["rps"],
            "p99_ms": wrk["p99"],
            "non_2xx": wrk.get("non2xx", 0),
            "socket_errors": wrk["socket_errors"],
            "server_cpu_ms_per_req": cpu["cpu_ms_per_req"],
            "cores_busy": cpu["cores_busy"],
            "shadowed": counter(url, "fmnist_shadow_predictions_total") - shadowed0,
            "dropped": counter(url, "fmnist_shadow_dropped_total") - dropped0,
            "requests": wrk["requests"],
            "shadow_calls": shadow_s[1] if shadow_s else 0,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--production", type=Path, required=True)
    p.add_argument("--candidate", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="shadow-cost-"))
    folder = work / "models"
    folder.mkdir()
    prod = Path(shutil.copy2(args.production, folder / "production.onnx"))
    cand = Path(shutil.copy2(args.candidate, folder / "candidate.onnx"))
    # The aliases file the service reads (docs/api.md, "Versions and aliases").
    aliases = {"production": file_sha256(prod)[:12], "candidate": file_sha256(cand)[:12]}
    (folder / "aliases.json").write_text(json.dumps({"baseline": aliases}))
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        row = {name: point(folder, rate, args, work) for name, rate in SETTINGS.items()}
        rounds.append(row)
        parts = [
            f"{n} {v['rps']:,.0f} req/s (shadowed {v['shadowed']:,.0f}, "
            f"dropped {v['dropped']:,.0f})"
            for n, v in row.items()
        ]
        print(f"round {r + 1}: " + ", ".join(parts), flush=True)
    summary: dict[str, Any] = {}
    for name, goal in GOALS.items():
        ratios = [row[name]["rps"] / row["off"]["rps"] for row in rounds]
        summary[name] = {
            "ratios": ratios,
            "median": statistics.median(ratios),
            "goal": goal,
            "rounds_met": sum(r >= goal for r in ratios),
            "shadowed_share": statistics.median(
                row[name]["shadowed"] / row[name]["requests"] for row in rounds
            ),
        }
        print(
            f"{name}: throughput {statistics.median(ratios):.0%} of shadow off (median of "
            f"{len(ratios)}; goal ≥ {goal:.0%}, met in {summary[name]['rounds_met']} of "
            f"{len(ratios)}); ratios {', '.join(f'{x:.0%}' for x in ratios)}; shadowed "
            f"{summary[name]['shadowed_share']:.0%} of requests"
        )
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
