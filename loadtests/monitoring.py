"""A real Prometheus beside the service, and the dashboard's queries as Grafana sends them.

Used by tests/test_prometheus_integration.py (every panel returns data, the drift rule moves)
and loadtests/dashboard.py (``make dashboard-png``: docs/images/dashboard.png)::

    with prometheus_server([service_url], [Path("deploy/monitoring/rules.yaml")], tmp) as prom:
        prom.query('fmnist:predicted_class_tvd:rate30m')
        for query in dashboard_queries(load_dashboard(), rate_interval="4s", range_="60s"):
            prom.query(query.expr)

Prometheus (Debian package ``prometheus``) listens on 127.0.0.1 on a free port, scrapes the
targets as job ``fmnist-service`` (the job name the rules expect) and keeps its data in a
temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtests.launch import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MONITORING_DIR = REPO_ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING_DIR / "rules.yaml"
DASHBOARD_FILE = MONITORING_DIR / "dashboard.json"
JOB = "fmnist-service"
PROMETHEUS = "/usr/bin/prometheus"


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or a query failed."""


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or PROMETHEUS
    if not Path(found).exists():
        raise PrometheusError(
            "prometheus is not installed (apt-get install prometheus, or run scripts/setup.sh)"
        )
    return found


@dataclass(frozen=True)
class Prometheus:
    """The HTTP API of a running Prometheus."""

    url: str

    def _get(self, path: str, params: dict[str, str]) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        if response.is_error:
            raise PrometheusError(f"{path} {params}: {response.text[:500]}")
        doc = response.json()
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        return list(self._get("/api/v1/query", params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        return list(self._get("/api/v1/query_range", params)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts", {})["alerts"])

    def wait_for(self, expr: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns something (e.g. the first scrape); the result."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.query(expr)
            if found:
                return found
            time.sleep(0.25)
        raise PrometheusError(f"{expr} returned nothing within {timeout_s:.0f}s")


def write_config(
    folder: Path,
    targets: Sequence[str],
    rule_files: Sequence[Path],
    scrape_interval: str,
    evaluation_interval: str,
) -> Path:
    """prometheus.yml scraping ``targets`` (host:port) as job fmnist-service."""
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    path = folder / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@contextlib.contextmanager
def prometheus_server(
    targets: Sequence[str],
    rule_files: Sequence[Path],
    folder: Path,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    ready_timeout_s: float = 30.0,
) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1 (a free port), data and config in ``folder``; stopped after."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, targets, rule_files, scrape_interval, evaluation_interval)
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                tail = (folder / "prometheus.log").read_text(errors="replace")[-2000:]
                raise PrometheusError(f"prometheus exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(prom.url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready within {ready_timeout_s:.0f}s")
            time.sleep(0.2)
        yield prom
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


# -- the dashboard's queries ------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel: str  # the panel's title
    kind: str  # its Grafana type (timeseries, bargauge)
    legend: str  # legendFormat
    expr: str  # as Grafana sends it, variables substituted


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def grafana_rate_interval(step_s: float, scrape_interval_s: float) -> str:
    """Grafana's $__rate_interval: max(step + scrape interval, 4 x scrape interval)."""
    return f"{max(step_s + scrape_interval_s, 4 * scrape_interval_s):g}s"


def substitute(expr: str, rate_interval: str, range_: str, model: str = ".*") -> str:
    """The expression as Grafana sends it: built-in and dashboard variables replaced.

    ``model`` is the value of the ``$model`` variable (its "All" value is ``.*``).
    """
    values = {
        "__rate_interval": rate_interval,
        "__range": range_,
        "__interval": rate_interval,
        "model": model,
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def dashboard_queries(
    dashboard: dict[str, Any], rate_interval: str, range_: str, model: str = ".*"
) -> list[PanelQuery]:
    """Every target of every panel, as Grafana would query it."""
    return [
        PanelQuery(
            panel["title"],
            panel["type"],
            target.get("legendFormat", ""),
            substitute(target["expr"], rate_interval, range_, model),
        )
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: ``{{label}}`` replaced by the series' label value."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
