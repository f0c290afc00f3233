"""Keep-alive clients that tell a cut request from a refused one: the rollout checks.

    python -m loadtests.rollout --url http://127.0.0.1:3000 --clients 8 --seconds 10

Each client keeps one HTTP/1.1 connection and sends single PNGs on it back to back,
reconnecting when the server answers ``Connection: close``. Every request ends as one of:

* **answered**: a response came back (its status is counted: 2xx or not);
* **cut**: the request was sent on an open connection and the connection closed (or
  was reset) before a response came: what a rollout must never do;
* **refused**: a new connection could not be made (the server was gone or not
  listening): no request was lost, the client knows to go elsewhere.

A rollout, a promotion or a SIGTERM under this load passes when ``cut == 0`` and every
answer is 2xx (tests/test_lifecycle_server.py). The load is bounded in time and stops by
itself; it only targets the URL it is given (loopback in the tests).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.rollout", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--model", default="baseline")
    a = p.parse_args(argv)
    with KeepAliveLoad(a.url, a.clients, f"/classify?model={a.model}") as load:
        time.sleep(a.seconds)
    print(json.dumps(load.result.summary(), indent=2))
    return 0 if load.result.cut == 0 and load.result.non_2xx == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
