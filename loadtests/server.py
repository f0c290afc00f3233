"""What the load tests measure on the server side: its processes' memory and ``/metrics``.

The server itself is started with :func:`loadtests.launch.bentoml_server` (the same helper
the service's tests use); this module finds its processes by the loopback port it
listens on, so it also works for a server started by hand.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import httpx
import psutil

from fmnist.prometheus import metric_totals

log = logging.getLogger(__name__)

SERVER_SERIES = (
    "fmnist_inference_batch_size_sum",
    "fmnist_inference_batch_size_count",
    "fmnist_inference_seconds_sum",
    "fmnist_inference_seconds_count",
)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET, 4xx and 5xx included (status 0 when nothing answers)."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError:
        return 0, ""
    return response.status_code, response.content.decode("utf-8", "replace")


def _is_server(process: psutil.Process) -> bool:
    try:
        name = process.name()
        return name.startswith(("python", "bentoml")) and "bentoml" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def server_processes(url: str) -> list[psutil.Process]:
    """The BentoML server listening on ``url``'s port: its arbiter and every worker.

    The workers share the arbiter's listening socket and psutil reports it under one of
    them, so climb to the topmost BentoML process and take all of its descendants.
    """
    port = urlparse(url).port
    roots: dict[int, psutil.Process] = {}
    for conn in psutil.net_connections(kind="tcp"):
        listens = conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        if not listens or conn.pid is None:
            continue
        try:
            process = psutil.Process(conn.pid)
            while (parent := process.parent()) is not None and _is_server(parent):
                process = parent
        except psutil.NoSuchProcess:
            continue
        roots[process.pid] = process
    found: dict[int, psutil.Process] = {}
    for root in roots.values():
        try:
            for p in (root, *root.children(recursive=True)):
                found[p.pid] = p
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def rss_bytes(processes: list[psutil.Process]) -> dict[int, int]:
    """Resident memory by pid (processes that have exited are left out)."""
    rss: dict[int, int] = {}
    for p in processes:
        try:
            rss[p.pid] = p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return rss


def scrape_totals(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum each named sample over all its labels in Prometheus text (e.g. ``_sum``/``_count``)."""
    totals = metric_totals(text, names)
    return {name: totals.get(name, 0.0) for name in names}


def scrape(url: str) -> str:
    status, text = http_get(f"{url}/metrics")
    if status != 200:
        log.warning("GET %s/metrics answered %s; server figures will be empty", url, status)
        return ""
    return text


def server_figures(before: str, after: str) -> dict[str, float]:
    """Server-side figures of the traffic between two ``/metrics`` scrapes.

    ``mean_batch`` counts images per onnxruntime call: adaptive batches of single images
    and clients' batch requests together.
    """
    a, b = scrape_totals(before, SERVER_SERIES), scrape_totals(after, SERVER_SERIES)
    delta = {k: b[k] - a[k] for k in SERVER_SERIES}
    calls = delta["fmnist_inference_seconds_count"]
    images = delta["fmnist_inference_batch_size_sum"]
    return {
        "onnx_calls": calls,
        "images": images,
        "mean_batch": images / calls if calls else 0.0,
        "mean_inference_ms": 1000 * delta["fmnist_inference_seconds_sum"] / calls if calls else 0.0,
    }
