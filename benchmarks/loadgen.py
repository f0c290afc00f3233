"""The machinery of benchmarks/serve_throughput.py: load generators and server-side meters.

- :func:`run_wrk` drives a closed loop with Debian's ``wrk`` (C, all connections opened at
  once) and reads its figures from a Lua ``done()`` hook as JSON; :func:`run_wrk_paced` offers a
  steady load at a fixed rate with wrk (Poisson arrivals); :func:`run_hey` a burst of every
  connection at once per period with Debian's ``hey`` (Go, ``-q`` requests/s per worker).
- :class:`CpuMeter` reads the CPU time (utime + stime) of a server's whole process tree
  from /proc (psutil), of the load generator (``RUSAGE_CHILDREN``) and of the machine
  (/proc/stat), so a point reports server CPU per request and what else was running.
- :func:`worker_requests` reads a per-worker request counter from ``/metrics`` if the
  server has one (a ``*_total`` counter with a ``worker`` label); :func:`histogram_totals`
  reads a histogram's sum and count (the service's time in its model calls).
- :func:`process_server` starts any server command in its own session on loopback and
  kills the whole group at the end, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import http.client  # post(): timed requests on bare fresh connections, no client overhead added
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from fmnist.prometheus import metric_samples, metric_totals
from loadtests.launch import wait_ready

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "%(ctype)s"
%(headers)slocal f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_s": %%.6f, "non2xx": %%d, "connect": %%d, "read": %%d, '
    .. '"write": %%d, "timeout": %%d, "p50": %%.3f, "p90": %%.3f, "p99": %%.3f, "p999": %%.3f, '
    .. '"max": %%.3f, "mean": %%.3f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3, latency.mean / 1e3))
end
"""


@dataclass(frozen=True)
class Request:
    """One pre-built POST: path, body and content type, written to a file for the tools."""

    label: str
    path: str
    body: bytes
    ctype: str
    headers: tuple[tuple[str, str], ...] = ()  # beyond Content-Type

    def files(self, folder: Path) -> tuple[Path, Path]:
        """(body file, wrk Lua script) under ``folder``."""
        slug = re.sub(r"\W+", "_", self.label)
        body = folder / f"{slug}.body"
        body.write_bytes(self.body)
        script = folder / f"{slug}.lua"
        headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in self.headers)
        script.write_text(WRK_SCRIPT % {"ctype": self.ctype, "body": body, "headers": headers})
        return body, script


def multipart(field_name: str, filename: str, data: bytes, ctype: str) -> tuple[bytes, str]:
    boundary = "fmnistbenchboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, req: Request, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body); status 0 if it failed."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        headers = {"Content-Type": req.ctype, **dict(req.headers)}
        conn.request("POST", req.path, body=req.body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def idle_latency(url: str, req: Request, n: int = 20, gap_s: float = 0.02) -> dict[str, Any]:
    """``n`` sequential requests, each on a new connection (so they reach every worker)."""
    times, bad = [], 0
    for _ in range(n):
        start = time.perf_counter()
        status, _ = post(url, req)
        times.append((time.perf_counter() - start) * 1000)
        bad += status != 200
        time.sleep(gap_s)
    return {"median_ms": statistics.median(times), "max_ms": max(times), "non200": bad}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def parse_wrk(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            out: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            out["socket_errors"] = out["connect"] + out["read"] + out["write"] + out["timeout"]
            out["rps"] = out["requests"] / out["duration_s"] if out["duration_s"] else 0.0
            return out
    raise RuntimeError(f"no figures in wrk's output:\n{stdout[-2000:]}")


def run_wrk(
    url: str, script: Path, connections: int, seconds: float, threads: int = 1
) -> dict[str, Any]:
    """Closed loop: ``connections`` keep-alive connections, opened at once, for ``seconds``
    (wrk takes whole seconds: rounded, at least 1)."""
    cmd = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
    ]
    cmd += ["--timeout", "10s", "-s", str(script), url]
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return {**parse_wrk(proc.stdout), "client_cpu_s": _children_cpu() - cpu0}


def parse_hey(stdout: str) -> dict[str, Any]:
    """Figures from hey's text summary (latencies in ms)."""
    out: dict[str, Any] = {"non2xx": 0, "socket_errors": 0, "requests": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", stdout):
        out["rps"] = float(m.group(1))
    for q, secs in re.findall(r"(\d+)%+ in ([\d.]+) secs", stdout):
        out[f"p{q}"] = float(secs) * 1000
    if m := re.search(r"Average:\s+([\d.]+) secs", stdout):
        out["mean"] = float(m.group(1)) * 1000
    for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", stdout):
        out["requests"] += int(n)
        out["non2xx"] += 0 if code.startswith("2") else int(n)
    if "Error distribution:" in stdout:
        tail = stdout.split("Error distribution:", 1)[1]
        out["socket_errors"] = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+\S", tail))
    return out


def run_hey(
    url: str,
    req: Request,
    body: Path,
    rate: float,
    seconds: float,
    workers: int = 16,
) -> dict[str, Any]:
    """``workers`` connections each sending ``rate / workers`` requests/s with hey's ``-q``.

    hey starts every connection's pacing clock at the same instant, so its connections fire
    in step: ``workers`` requests arrive together once per period (a synchronised burst,
    not a steady load; :func:`run_wrk_paced` offers the steady one).
    """
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{rate / workers:.3f}"]
    cmd += ["-m", "POST", "-T", req.ctype, "-D", str(body), "-t", "10"]
    cmd += [arg for k, v in req.headers for arg in ("-H", f"{k}: {v}")] + [url + req.path]
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return {**parse_hey(proc.stdout), "offered_rps": rate, "client_cpu_s": _children_cpu() - cpu0}


PACED_SCRIPT = """
math.randomseed(%(seed)d)
function delay()
  return math.floor(-%(mean_ms).4f * math.log(1 - math.random()) + 0.5)
end
"""


def run_wrk_paced(
    url: str,
    script: Path,
    rate: float,
    seconds: float,
    connections: int = 32,
    calibrate_s: float = 3.0,
) -> dict[str, Any]:
    """Poisson arrivals at about ``rate`` requests/s with wrk: after each answer, a
    connection waits an exponentially distributed pause before its next request, so the
    ``connections`` streams add up to a steady random load (the pause is not in the
    latency). The mean pause is ``connections / rate`` less the mean latency, which a
    ``calibrate_s`` run measures first; wrk's timers count whole milliseconds.
    """
    period_ms = 1000.0 * connections / rate
    paced = script.with_name(script.stem + "-paced.lua")

    def run(mean_ms: float, secs: float) -> dict[str, Any]:
        extra = PACED_SCRIPT % {"seed": 1, "mean_ms": max(0.0, mean_ms)}
        paced.write_text(script.read_text() + extra)
        return run_wrk(url, paced, connections, secs)

    probe = run(period_ms, calibrate_s)
    out = run(period_ms - probe["mean"], seconds)
    return {**out, "offered_rps": rate, "arrivals": "Poisson (wrk)"}


def _proc_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()  # reaped children's time is in the parent's children_* fields
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and every descendant, by pid (from /proc)."""
    root = psutil.Process(pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            out[p.pid] = _proc_cpu(p)
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> str | None:
    """``url``/metrics as text; None when it cannot be read."""
    try:
        response = httpx.get(url + "/metrics", timeout=5, follow_redirects=True)
    except httpx.HTTPError:
        return None
    return None if response.is_error else response.content.decode()


def parse_worker_counts(text: str) -> dict[str, float] | None:
    """Requests per worker from Prometheus text: the first ``*_total`` counter with a
    ``worker`` label (one with "request" in its name preferred), summed over other labels."""
    counts: dict[str, dict[str, float]] = {}
    for sample in metric_samples(text):
        if sample.name.endswith("_total") and "worker" in sample.labels:
            per = counts.setdefault(sample.name, {})
            worker = sample.labels["worker"]
            per[worker] = per.get(worker, 0.0) + sample.value
    names = sorted(counts, key=lambda n: ("request" not in n, n))
    return counts[names[0]] if names else None


def worker_requests(url: str) -> dict[str, float] | None:
    """:func:`parse_worker_counts` of ``url``/metrics; None without such a counter."""
    text = scrape(url)
    return None if text is None else parse_worker_counts(text)


def histogram_totals(url: str, name: str, **labels: str) -> tuple[float, float] | None:
    """(sum, count) of histogram ``name`` in ``url``/metrics, over the series whose labels
    include ``labels``; None when the server has no such histogram or cannot be read."""
    totals = metric_totals(scrape(url) or "", (f"{name}_sum", f"{name}_count"), **labels)
    return (totals.get(f"{name}_sum", 0.0), totals.get(f"{name}_count", 0.0)) if totals else None


@dataclass
class CpuMeter:
    """Brackets one load window: server tree CPU, per-process and per-worker splits."""

    pid: int
    url: str
    workers: int
    t0: float = 0.0
    tree0: dict[int, float] = field(default_factory=dict)
    busy0: float = 0.0
    self0: float = 0.0
    metrics0: dict[str, float] | None = None

    def __enter__(self) -> CpuMeter:
        self.metrics0 = worker_requests(self.url) if self.workers > 1 else None
        self.tree0, self.busy0, self.self0 = tree_cpu(self.pid), machine_busy_s(), _self_cpu()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def result(self, requests: int, client_cpu_s: float) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        tree1, busy1, self1 = tree_cpu(self.pid), machine_busy_s(), _self_cpu()
        per = {p: tree1[p] - self.tree0.get(p, 0.0) for p in tree1}
        mine = self1 - self.self0
        server = sum(per.values())
        out: dict[str, Any] = {
            "server_cpu_s": server,
            "cpu_ms_per_req": server * 1000 / requests if requests else float("nan"),
            "cores_busy": server / wall,
            "client_cores": client_cpu_s / wall,
            # the machine's busy time less the server's, the load generator's and ours
            "other_cores": max(0.0, (busy1 - self.busy0 - server - client_cpu_s - mine) / wall),
            "busiest_share": None,
            "share_from": None,
        }
        if self.workers > 1:
            m1 = worker_requests(self.url) if self.metrics0 is not None else None
            if self.metrics0 is not None and m1:
                split = [v - self.metrics0.get(k, 0.0) for k, v in m1.items()]
                out["share_from"] = "metrics"
            else:  # CPU of the processes below the root (the workers), busiest first
                split = [v for p, v in per.items() if p != self.pid]
                out["share_from"] = "cpu"
            total = sum(split)
            out["worker_split"] = sorted(split, reverse=True)
            out["busiest_share"] = max(split) / total if total > 0 else None
        return out


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL after 15 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def process_server(
    cmd: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    log_path: Path,
    cwd: Path | None = None,
    ready_timeout_s: float = 120.0,
) -> Iterator[int]:
    """Run ``cmd`` in its own session until ``ready_url`` answers 200; yields its pid."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            env={**os.environ, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(ready_url, proc, ready_timeout_s)
            yield proc.pid
        finally:
            stop_group(proc)


def child_server_pid(port: int) -> int:
    """The pid of our direct child serving ``port`` (BentoML retitles itself ``circusd``)."""
    for p in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            for q in [p, *p.children(recursive=True)]:
                if any(c.laddr.port == port for c in q.net_connections("tcp")):
                    return p.pid
    raise RuntimeError(f"no child process serves port {port}")
