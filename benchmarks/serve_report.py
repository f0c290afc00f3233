"""The Markdown report of benchmarks/serve_throughput.py: tables, issue 11's goals, header."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from fmnist.markdown import markdown_table

BATCH = 64


def fmt(v: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "—" if v is None or v != v else f"{v:{spec}}{unit}"


def share(p: dict[str, Any]) -> str:
    if p.get("busiest_share") is None or p["conns"] < 2:
        return "—"
    return f"{p['busiest_share']:.0%} ({p['share_from']})"


def rate_of(points: list[dict[str, Any]], server: str, conns: int) -> float | None:
    return next((p["rps"] for p in points if p["server"] == server and p["conns"] == conns), None)


BATCH_PATHS = {
    "multipart form": "`/classify_npy`",
    "raw .npy body": "`/classify_npy`",
    "v2 binary tensors": "`/v2/models/{name}/infer`",
}


def batch_points(b: Any) -> list[tuple[str, dict[str, Any]]]:
    """The batch endpoint's points: (how the .npy was sent, point), those that ran."""
    hows = (
        ("batch", "multipart form"),
        ("batch_raw", "raw .npy body"),
        ("batch_v2", "v2 binary tensors"),
    )
    return [(how, b.extra[key]) for key, how in hows if b.extra.get(key)]


def around(point: dict[str, Any]) -> float:
    """Images/s of in-process onnxruntime measured just before and after a batch point."""
    return sum(point["inproc_around"]) / len(point["inproc_around"])


def model_call(point: dict[str, Any]) -> str:
    """The server's CPU per request and the time of its model call in it, when the point
    read the service's call histogram; the rest is HTTP, parsing, metrics and the answer."""
    if "model_ms_per_call" not in point:
        return ""
    calls = point["model_calls_per_req"]
    per = "" if abs(calls - 1) < 0.01 else f" × {calls:.2f} calls"
    return (
        f" = {point['cpu_ms_per_req']:.2f} ms/request, of which the model call "
        f"{point['model_ms_per_call']:.2f} ms{per} (wall time)"
    )


def ratios(b: Any, reference: float) -> str:
    """Each batch point's images/s over ``reference``, in batch_points' order."""
    return " / ".join(f"{p['images_per_s'] / reference:.0%}" for _, p in batch_points(b))


def report(b: Any, meta: dict[str, Any]) -> str:
    a, pts = b.args, b.points
    out = ["```", *meta["header"], "```", ""]
    rows = []
    for p in pts:
        ks, ref = rate_of(pts, "KServe", p["conns"]), rate_of(pts, "BentoML reference", p["conns"])
        is_svc = p["server"] == "service"
        rows.append(
            [
                p["server"],
                p["request"],
                p["conns"],
                f"{p['rps']:,.0f}",
                f"{p['p50']:.1f}",
                f"{p['p90']:.1f}",
                f"{p['p99']:.1f}",
                f"{p['non2xx']} / {p['socket_errors']}",
                f"{p['cpu_ms_per_req']:.2f}",
                f"{p['cores_busy']:.2f}",
                share(p),
                fmt(p["rps"] / ks if is_svc and ks else None, ".2f", "×"),
                fmt(p["rps"] / ref if is_svc and ref else None, ".2f", "×"),
                f"{p['client_cores']:.2f} / {p['other_cores']:.2f}",
            ]
        )
    header = ["server", "request", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms"]
    header += ["non-2xx / sock err", "server CPU ms/req", "cores busy", "busiest worker"]
    header += ["× KServe", "× reference", "wrk / other cores"]
    out.append(markdown_table(header, rows, align="llrrrrrlrrlrrl"))
    if b.fixed:
        out += [
            "",
            f"Fixed offered load ({a.fixed_fraction:.0%} of the best closed-loop rate "
            f"before it, {a.fixed_workers} connections). *Poisson (wrk)*: after each answer a "
            "connection pauses for an exponentially distributed time before its next request "
            "(mean: connections / rate less the mean latency, calibrated in a 3 s run), so "
            "the connections add up to a steady random load; the goal's figure. *In step "
            "(hey)*: hey's `-q` starts every connection's clock at once, so all connections "
            "fire together once per period: a burst of that many requests. Each connection "
            "has at most one request in flight, so *got* falls short of *offered* when the "
            "server cannot keep up:",
            "",
        ]
        header = ["server", "request", "arrivals", "offered req/s", "got req/s", "p50 ms"]
        header += ["p90 ms", "p99 ms", "non-2xx / errors", "server CPU ms/req", "cores busy"]
        header += ["client cores"]
        rows = [
            [
                f["server"],
                f["request"],
                f.get("arrivals", "in step (hey)"),
                f"{f['offered_rps']:,.0f}",
                fmt(f.get("rps")),
                fmt(f.get("p50"), ".1f"),
                fmt(f.get("p90"), ".1f"),
                fmt(f.get("p99"), ".1f"),
                f"{f['non2xx']} / {f['socket_errors']}",
                f"{f['cpu_ms_per_req']:.2f}",
                f"{f['cores_busy']:.2f}",
                f"{f['client_cores']:.2f}",
            ]
            for f in b.fixed
        ]
        out.append(markdown_table(header, rows, align="lllrrrrrlrrr"))
    bt, ip = b.extra.get("batch"), b.extra.get("inproc")
    if bt and ip:
        out += [
            "",
            f"Batch endpoint, {BATCH} images per request ({b.extra['batch_source']}):",
            "",
        ]
        rows = [
            [
                f"{BATCH_PATHS[how]}, {how}, {a.batch_connections} connections (server CPU "
                f"{p['cpu_ms_per_req'] / BATCH:.3f} ms/image{model_call(p)}, "
                f"{p['cores_busy']:.2f} cores, {p['non2xx']} non-2xx)",
                f"{p['images_per_s']:,.0f}",
                "—",
            ]
            for how, p in batch_points(b)
        ]
        rows += [
            [
                f"in-process onnxruntime, {a.workers} processes × 1 thread, just before and "
                f"after the {how} point",
                f"{around(p):,.0f} ({' and '.join(f'{x:,.0f}' for x in p['inproc_around'])}; "
                f"{1e3 * BATCH * a.workers / around(p):.2f} ms per call of {BATCH})",
                f"{p['images_per_s'] / around(p):.0%}",
            ]
            for how, p in batch_points(b)
            if p.get("inproc_around")
        ]
        rows += [
            ["in-process onnxruntime, 1 session × 1 thread", f"{ip[1]:,.0f}", ratios(b, ip[1])],
            [
                f"in-process onnxruntime, {a.workers} processes × 1 thread (as the service)",
                f"{ip[a.workers]:,.0f}",
                ratios(b, ip[a.workers]),
            ],
        ]
        out.append(markdown_table(["what", "images/s", "batch endpoint / this"], rows, "lrr"))
    rec = b.extra.get("recovery")
    if rec:
        bu = rec["burst"]
        out += [
            "",
            f"Recovery (fresh service; idle = median of {a.idle_requests} sequential "
            f"requests, new connection each; burst: {a.burst_connections} connections for "
            f"{a.burst:g} s → {bu['rps']:,.0f} req/s, p99 {bu['p99']:.0f} ms, "
            f"{bu['non2xx']} non-2xx):",
            "",
        ]
        base = rec["before"]["median_ms"]
        rows = [
            [k, f"{v['median_ms']:.1f}", f"{v['max_ms']:.1f}", v["non200"]]
            + [f"{v['median_ms'] / base:.1f}×"]
            for k, v in rec.items()
            if k != "burst"
        ]
        header = ["when", "median ms", "max ms", "non-200", "× before"]
        out.append(markdown_table(header, rows, "lrrrr"))
    out += ["", *goals(b)]
    others = [p["other_cores"] for p in pts + b.fixed]
    if others and max(others) > 0.25:
        out += [
            "",
            f"**Measured under contention**: other processes used up to "
            f"{max(others):.2f} cores during the load windows.",
        ]
    out += [f"- {n}" for n in b.notes]
    return "\n".join(out)


def goals(b: Any) -> list[str]:
    """Issue 11's goals, from this run (service multipart /classify)."""
    svc = {
        p["conns"]: p
        for p in b.points
        if p["server"] == "service" and p["request"] == "multipart PNG"
    }
    rows: list[tuple[str, str, bool | None]] = []
    s32 = svc.get(32)
    if s32:
        for peer, goal in (("KServe", 1.0), ("BentoML reference", 7.0)):
            r = rate_of(b.points, peer, 32)
            rows.append(
                (
                    f"throughput vs {peer}, 32 conns (≥ {goal:g}×)",
                    fmt(s32["rps"] / r if r else None, ".2f", "×"),
                    s32["rps"] / r >= goal if r else None,
                )
            )
        rows.append(
            (
                "server CPU per request, 32 conns (≤ 0.5 ms)",
                f"{s32['cpu_ms_per_req']:.2f} ms",
                s32["cpu_ms_per_req"] <= 0.5,
            )
        )
        rows.append(
            (
                "server cores busy, 32 conns (≥ 1.8)",
                f"{s32['cores_busy']:.2f}",
                s32["cores_busy"] >= 1.8,
            )
        )
        rows.append(("p99 at 32 conns (≤ 20 ms)", f"{s32['p99']:.1f} ms", s32["p99"] <= 20))
    for c in (32, 256):
        if c in svc and svc[c]["busiest_share"] is not None:
            rows.append(
                (
                    f"busiest worker's share, {c} conns (≤ 60 %)",
                    share(svc[c]),
                    svc[c]["busiest_share"] <= 0.6,
                )
            )
    for f in b.fixed:
        if f["server"] != "service" or "p99" not in f:
            continue
        if f.get("arrivals", "").startswith("Poisson"):
            rows.append(
                ("p99 at a fixed 50 % of capacity (≤ 10 ms)", f"{f['p99']:.1f} ms", f["p99"] <= 10)
            )
        else:  # shown beside the goal's figure, judged by none
            rows.append(
                ("p99 at 50 % of capacity, connections in step", f"{f['p99']:.1f} ms", None)
            )
    rec = b.extra.get("recovery")
    if rec and len(rec) > 2:
        first = next(k for k in rec if k not in ("before", "burst"))
        x = rec[first]["median_ms"] / rec["before"]["median_ms"]
        rows.append((f"idle latency {first} the burst vs before (≤ 2×)", f"{x:.1f}×", x <= 2))
    bt, ip = b.extra.get("batch"), b.extra.get("inproc")
    if bt and ip:
        for how, p in batch_points(b):
            x = p["images_per_s"] / (around(p) if p.get("inproc_around") else ip[b.args.workers])
            body = "" if how == "multipart form" else f", {how}"
            rows.append(
                (
                    f"batch endpoint vs in-process, batch 64{body} "
                    f"(≥ 70 %; vs {b.args.workers} processes)",
                    f"{x:.0%}",
                    x >= 0.7,
                )
            )
    verdict = {True: "met", False: "**not met**", None: "—"}
    table = markdown_table(
        ["goal (issue 11)", "this run", ""], [[g, v, verdict[ok]] for g, v, ok in rows], "lrl"
    )
    return table.splitlines()


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def header(args: argparse.Namespace, model: Path, image: Path, peer_python: Path) -> list[str]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    vers = []
    for mod in ("bentoml", "onnxruntime"):
        with contextlib.suppress(Exception):
            vers.append(f"{mod} {__import__(mod).__version__}")
    if peer_python.exists():
        r = subprocess.run(
            [str(peer_python), "-c", "import importlib.metadata as m; print(m.version('kserve'))"],
            capture_output=True,
            text=True,
        )
        vers.append(f"kserve {r.stdout.strip() or 'missing'}")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}  {' '.join(sys.argv)}",
        f"{cpu}, {os.cpu_count()} CPUs, load average at start {load}",
        f"Python {platform.python_version()}, {', '.join(vers)}, wrk + hey (Debian)",
        f"model {_short(model)} (sha256 {sha}…), image {_short(image)} "
        f"({image.stat().st_size} bytes); "
        f"{args.seconds:g} s per point, service workers {args.workers}",
    ]
