"""Start ``bentoml serve`` in a subprocess on loopback and wait until it is ready.

Harness, not product: the slow tests, the load tests, the benchmarks and scripts/pipeline.py
start the service with it; the service image does not hold it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

SERVICE = "service.service:FashionMNISTService"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} was ready")
        attempt += 1
        try:
            if httpx.get(url, timeout=2, follow_redirects=True).status_code == 200:
                log.info("%s ready after %d polls", url, attempt)
                return
        except httpx.TransportError:  # not listening yet, or cut off while starting
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready within {timeout_s:.0f}s ({attempt} polls)")


def wait_for_workers(log_path: Path, workers: int, timeout_s: float = 60) -> None:
    """Until every worker of a ``bentoml_server`` has logged its start in ``log_path``.

    ``/readyz`` answers as soon as one worker is up, and a worker that has not yet imported
    the service holds no socket, so the kernel cannot hand it a connection: whatever needs
    connections spread over the workers waits for this first."""
    expected = {
        f"[entry_service:fmnist:{i}] Service fmnist initialized" for i in range(1, workers + 1)
    }
    deadline = time.monotonic() + timeout_s
    while missing := {line for line in expected if line not in log_path.read_text()}:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"workers not started within {timeout_s:.0f}s: {sorted(missing)}")
        time.sleep(0.1)


@contextlib.contextmanager
def bentoml_server(
    env: Mapping[str, str],
    target: str = SERVICE,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 90.0,
    ready_path: str = "/readyz",
    cwd: Path = REPO_ROOT,
) -> Iterator[str]:
    """``bentoml serve target`` on 127.0.0.1 with ``env`` added; yields the base URL."""
    port = port or free_port()
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env}
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + ready_path, proc, ready_timeout_s)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the arbiter and its workers, nothing else
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]
