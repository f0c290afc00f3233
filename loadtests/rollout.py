"""Keep-alive clients that tell a cut request from a refused one: the rollout checks.

    python -m loadtests.rollout --model-dir DIR --production V1 --candidate V2 --json out.json

Each client keeps one HTTP/1.1 connection and sends single PNGs on it back to back,
reconnecting when the server answers ``Connection: close``. Every request ends as one of:

* **answered**: a response came back (its status is counted: 2xx or not);
* **cut**: the request was sent on an open connection and the connection closed (or
  was reset) before a response came: what a rollout must never do;
* **refused**: a new connection could not be made (the server was gone or not
  listening): no request was lost, the client knows to go elsewhere.

A rollout, a promotion or a SIGTERM under this load passes when ``cut == 0`` and every
answer is 2xx (tests/test_lifecycle_server.py). The command starts the service on
loopback over a folder holding two versions of a model, promotes and rolls back under
hey's load (16 connections) and under 8 keep-alive clients, then sends SIGTERM under the
clients, and prints every count (the figures of docs/operations.md). The load is bounded
in time and stops by itself; it only targets the server it started.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client  # raw keep-alive sockets: a connection cut mid-request is counted as such
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image


def png_bytes(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    cut: int = 0
    refused: int = 0
    versions: Counter[str] = field(default_factory=Counter)  # answers by "version" field
    errors: Counter[str] = field(default_factory=Counter)  # cut and refused, by exception

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)

    def summary(self) -> dict[str, object]:
        return {
            "answered": self.answered,
            "non_2xx": self.non_2xx,
            "cut": self.cut,
            "refused": self.refused,
            "statuses": dict(self.statuses),
            "versions": dict(self.versions),
            "errors": dict(self.errors),
        }


class KeepAliveLoad:
    """``clients`` threads sending ``POST path`` with ``body`` until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        clients: int = 8,
        path: str = "/classify?model=baseline",
        body: bytes | None = None,
        content_type: str = "image/png",
        timeout: float = 30.0,
        stop_on_refused: float = 2.0,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.clients, self.path = clients, path
        self.body = png_bytes() if body is None else body
        self.content_type, self.timeout = content_type, timeout
        self.stop_on_refused = stop_on_refused  # a client refused this long gives up
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> KeepAliveLoad:
        return self.start()

    def start(self) -> KeepAliveLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.result

    def _failed(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            setattr(self.result, kind, getattr(self.result, kind) + 1)
            self.result.errors[f"{kind}: {type(exc).__name__}"] += 1

    def _answered(self, status: int, version: str) -> None:
        with self._lock:
            self.result.statuses[status] += 1
            self.result.versions[version] += 1

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        refused_since: float | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                try:
                    conn.connect()
                except OSError as exc:
                    conn = None
                    self._failed("refused", exc)
                    now = time.monotonic()
                    refused_since = refused_since or now
                    if now - refused_since > self.stop_on_refused:
                        return
                    time.sleep(0.05)
                    continue
                refused_since = None
            try:
                conn.request(
                    "POST", self.path, body=self.body, headers={"Content-Type": self.content_type}
                )
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                self._failed("cut", exc)
                continue
            version = ""
            if response.status == 200:
                try:
                    version = str(json.loads(payload).get("version", ""))
                except ValueError:
                    version = "?"
            self._answered(response.status, version)
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def hey_load(
    url: str, path: str, body: Path, seconds: float, connections: int
) -> dict[str, object]:
    """hey (Go) for ``seconds``: its status-code and error distributions."""
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(connections), "-m", "POST", "-T", "image/png",
         "-D", str(body), f"{url}{path}"],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = (
        re.findall(r"\[(\d+)\]\s+(.+)", out.split("Error distribution:")[-1])
        if ("Error distribution:" in out)
        else []
    )
    return {
        "statuses": statuses,
        "non_2xx": sum(n for c, n in statuses.items() if not 200 <= c < 300),
        "errors": {msg.strip(): int(n) for n, msg in errors},
        "requests_per_s": float(m.group(1))
        if (m := re.search(r"Requests/sec:\s+([\d.]+)", out))
        else 0,
    }


def check(model_dir: Path, name: str, production: str, candidate: str, seconds: float) -> dict:
    """Promotion and rollback under hey and under keep-alive clients, then SIGTERM under
    keep-alive clients, on a real 2-worker server over ``model_dir``."""
    from loadtests.launch import REPO_ROOT, bentoml_server, free_port, wait_ready

    aliases = model_dir / "aliases.json"
    aliases.write_text(json.dumps({name: {"production": production}}))
    env = {
        "FMNIST_MODEL_DIR": str(model_dir),
        "FMNIST_WORKERS": "2",
        "FMNIST_ALIASES_POLL_S": "0.5",
    }
    promote = [sys.executable, "-m", "service.promote"]
    cli_env = {**os.environ, **env}
    report: dict[str, object] = {}
    body = model_dir.parent / "request.png"
    body.write_bytes(png_bytes())
    with (
        tempfile.TemporaryDirectory() as home,
        bentoml_server({**env, "BENTOML_HOME": home}) as url,
    ):
        for client in ("hey", "keep-alive clients"):
            third = seconds / 3
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                if client == "hey":
                    load = pool.submit(hey_load, url, f"/classify?model={name}", body, seconds, 16)
                else:
                    clients = KeepAliveLoad(url, 8, f"/classify?model={name}").start()
                time.sleep(third)
                subprocess.run([*promote, f"{name}@{candidate}"], env=cli_env, check=True)
                time.sleep(third)
                subprocess.run(
                    [sys.executable, "-c", "from service.promote import rollback_main as m; "
                     f"raise SystemExit(m([{name!r}]))"], env=cli_env, check=True,
                )  # fmt: skip
                time.sleep(third)
                result = load.result() if client == "hey" else clients.stop().summary()
            report[f"promotion and rollback, {client}"] = result
            aliases.write_text(json.dumps({name: {"production": production}}))
            time.sleep(1.5)
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service.service:FashionMNISTService",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env={**cli_env, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "true"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", proc, 90)
        with KeepAliveLoad(url, 8, f"/classify?model={name}") as load:
            time.sleep(seconds / 2)
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            took = time.monotonic() - began
        report["SIGTERM, keep-alive clients"] = {
            **load.result.summary(),
            "exit_code": code,
            "exit_after_s": round(took, 2),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.rollout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model-dir", type=Path, required=True, help="a folder with both versions")
    p.add_argument("--model", default="baseline")
    p.add_argument("--production", required=True, help="the version serving at the start")
    p.add_argument("--candidate", required=True, help="the version promoted, then rolled back")
    p.add_argument("--seconds", type=float, default=9.0, help="length of each load phase")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    report = check(a.model_dir, a.model, a.production, a.candidate, a.seconds)
    print(json.dumps(report, indent=2))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    lost = [k for k, r in report.items() if r.get("non_2xx") or r.get("cut")]
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
