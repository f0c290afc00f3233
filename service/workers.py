"""Per-worker process set-up: a listening socket of its own, connections that do not stay
forever, and a garbage collector tuned for a server.

**What it is for, and where it does nothing.** The socket and connection balancing below
spread connections over the workers of *one* server process tree (``FMNIST_WORKERS`` ≥ 2
on one host: a VM, a bare machine, ``docker run`` with several cores). The Kubernetes
manifests run one worker per pod and let the Service spread connections over pods, so
there none of it switches on (one worker: nothing to balance). Keep it for the
several-workers case; do not copy it where one worker serves.

**Both workers busy.** ``bentoml serve`` binds one listening socket and hands it to every
worker (``--fd N``). Each worker's event loop accepts in a loop until the queue is empty,
so a client that opens its keep-alive connections at once (wrk, a proxy, an ingress) can
land all of them on the worker that woke first, and they stay there. With
``FMNIST_REUSE_PORT`` (default on) worker 1 keeps the inherited socket and every other
worker puts a socket of its own, bound to the same address with ``SO_REUSEPORT``, in its
place before uvicorn starts listening: the kernel then spreads new connections over the
sockets by a hash of their addresses. (The inherited socket gets ``SO_REUSEPORT`` too, so
that the kernel puts all of them in one group.) If anything is not as expected the worker
keeps the shared socket and says so in the log: never worse than before.

A hash spreads few connections unevenly (8 connections split 4/4 only 27 % of the time,
6/2 or worse 29 %), and kept-alive connections never move, so :class:`KeepAliveLimit`
also balances them. Every worker counts its kept-alive connections (two requests or more)
that sent a request in the last second, and publishes the count in a small table that
all workers map (:class:`WorkerConnections`, a file beside the Prometheus multi-process
files of this server). Ten times a second a worker compares its count with its fair
share, ``ceil(all / workers)``; an excess seen at two ticks in a row is closed by
answering that many connections' next requests with ``Connection: close``: the clients
reconnect and are hashed afresh, until no worker holds more than its share
(``FMNIST_BALANCE_CONNECTIONS``, default on). Only excess connections are closed, so a
balanced server closes none. ``FMNIST_KEEPALIVE_REQUESTS`` also closes a connection after
that many requests, as nginx's ``keepalive_requests`` does.

**A short tail.** CPython's cyclic collector scans every tracked object in a full
collection. After start-up a worker holds a few hundred thousand long-lived objects
(BentoML, pydantic, numpy, onnxruntime bindings), so each full collection took tens to
hundreds of milliseconds, and the rising young-generation counts of the request path
triggered them every few seconds. :func:`tune_gc` freezes what start-up built (those
objects are never scanned again) and raises the young-generation threshold.
"""

from __future__ import annotations

import gc
import logging
import math
import mmap
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.lifecycle import Drain

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)  # young, middle, old: fewer, cheaper collections


def inherited_fd(argv: list[str] | None = None) -> int | None:
    """The listening socket's descriptor handed to a BentoML worker (``--fd N``), if any."""
    argv = sys.argv if argv is None else argv
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--fd" and i + 1 < len(argv) else None
        if arg.startswith("--fd="):
            value = arg.split("=", 1)[1]
        if value is not None and value.isdigit():
            return int(value)
    return None


def own_listening_socket(fd: int, worker_index: int, backlog: int = 2048) -> bool:
    """Give worker ``worker_index`` (1-based) a SO_REUSEPORT socket of its own at ``fd``.

    Worker 1 keeps the inherited socket (it only gains SO_REUSEPORT, so that the others can
    join it); the others bind a new socket to the same address and ``dup2`` it over ``fd``,
    where uvicorn will pick it up. Returns True when this worker now has its own socket.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    inherited = socket.socket(fileno=os.dup(fd))
    try:
        if inherited.type != socket.SOCK_STREAM or not inherited.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            log.warning("fd %d is not a listening TCP socket; keeping it shared", fd)
            return False
        inherited.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if worker_index <= 1:
            return False
        address = inherited.getsockname()
        own = socket.socket(inherited.family, socket.SOCK_STREAM)
        try:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.bind(address)
            own.listen(backlog)
            os.dup2(own.fileno(), fd, inheritable=False)
        finally:
            own.close()
        return True
    except OSError as exc:
        log.warning(
            "worker %d keeps the shared socket (SO_REUSEPORT failed: %s)", worker_index, exc
        )
        return False
    finally:
        inherited.close()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WorkerConnections:
    """How many connections each worker of one server holds: a slot per worker in a file
    that every worker maps. A worker writes only its own slot; a slot not written for
    ``stale_s`` (a worker that served nothing lately, or died) counts as 0."""

    SLOT = struct.Struct("dd")  # active connections, time.monotonic() of the write

    def __init__(self, path: Path, workers: int, index: int, stale_s: float = 2.0) -> None:
        if not 1 <= index <= workers:
            raise ValueError(f"worker index {index} is not in 1..{workers}")
        self.path, self.workers, self.index, self.stale_s = Path(path), workers, index, stale_s
        size = self.SLOT.size * workers
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:  # every worker grows it to the same size
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path, workers: int, index: int) -> WorkerConnections | None:
        """The table, or None (and a warning: connections are then not balanced) when its
        file cannot be made; a worker must start either way."""
        try:
            return cls(path, workers, index)
        except (OSError, ValueError) as exc:
            log.warning("connections are not balanced over the workers (%s: %s)", path, exc)
            return None

    def publish(self, active: int, now: float) -> None:
        self.SLOT.pack_into(self._map, self.SLOT.size * (self.index - 1), active, now)

    def counts(self, now: float) -> list[int]:
        """Every worker's count, its own slot included (0 where stale)."""
        out = []
        for i in range(self.workers):
            active, at = self.SLOT.unpack_from(self._map, self.SLOT.size * i)
            out.append(int(active) if now - at <= self.stale_s else 0)
        return out

    def excess(self, active: int, now: float) -> int:
        """How many of its ``active`` connections this worker holds beyond its fair share."""
        counts = self.counts(now)
        counts[self.index - 1] = active
        return max(0, active - math.ceil(sum(counts) / self.workers))

    def close(self) -> None:
        self._map.close()


class KeepAliveLimit:
    """ASGI middleware: answer a request with ``Connection: close`` (uvicorn then closes
    the connection after the response) when it is the connection's ``max_requests``-th
    (0: no limit), when ``balance`` says this worker holds more connections than its
    share (see the module), or while ``drain`` is active (SIGTERM, service/lifecycle.py).
    ``on_tick`` gets the worker's active connections each tick;
    ``on_rebalance`` is called for each connection closed to rebalance."""

    MAX_TRACKED = 65_536  # connections remembered at once; forgotten all together beyond
    TICK_S = 0.1  # how often a worker publishes its count and reads the others'
    ACTIVE_S = 1.0  # a kept-alive connection that sent a request this recently is active

    def __init__(
        self,
        app: ASGIApp,
        max_requests: int,
        balance: WorkerConnections | None = None,
        on_tick: Callable[[int], None] | None = None,
        on_rebalance: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain: Drain | None = None,
    ) -> None:
        self.app = app
        self.drain = drain
        self.max_requests = max_requests
        self.balance = balance
        self._on_tick = on_tick
        self._on_rebalance = on_rebalance
        self._clock = clock
        self._served: dict[Any, int] = {}  # (client host, port) -> requests on it so far
        # (client host, port) -> [its last request's time, its requests]
        self._seen: dict[Any, list[float]] = {}
        self._excess = 0  # connections still to close before the next tick
        self._last_excess = 0
        self._next_tick = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = False
        if self.drain is not None:
            if not self.drain.installed:
                self.drain.install()  # uvicorn's SIGTERM handler is in place by now
            self.drain.seen()
            close = self.drain.active  # draining: every answer closes its connection
        if not close and (client is None or (self.max_requests <= 0 and self.balance is None)):
            await self.app(scope, receive, send)
            return
        if self.max_requests > 0 and not close:
            count = self._served.get(client, 0) + 1
            close = count >= self.max_requests
            if close:
                self._served.pop(client, None)
            else:
                if len(self._served) >= self.MAX_TRACKED:
                    self._served.clear()
                self._served[client] = count
        if self.balance is not None and not close:
            now = self._clock()
            seen = self._seen.get(client)
            if seen is None:
                self._seen[client] = seen = [now, 1]
            else:
                seen[0] = now
                seen[1] += 1
            if now >= self._next_tick:
                self._tick(now)
            if self._excess > 0 and not close and seen[1] > 1:
                self._excess -= 1
                close = True
                if self._on_rebalance is not None:
                    self._on_rebalance()
            if close:
                self._seen.pop(client, None)  # gone from this worker from now on
                self._served.pop(client, None)
        if not close:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)

    def _tick(self, now: float) -> None:
        assert self.balance is not None
        horizon = now - self.ACTIVE_S
        self._seen = {c: seen for c, seen in self._seen.items() if seen[0] >= horizon}
        # Kept-alive connections only: a one-off request (a probe, a scrape) is not
        # counted, and closing its connection would move nothing.
        active = sum(1 for seen in self._seen.values() if seen[1] > 1)
        self.balance.publish(active, now)
        # Only an excess seen at two ticks in a row is closed: the others' counts lag by up
        # to a tick (at start, or while a moved connection comes back elsewhere).
        excess = self.balance.excess(active, now)
        self._excess = min(excess, self._last_excess)
        self._last_excess = excess
        self._next_tick = now + self.TICK_S
        if self._on_tick is not None:
            self._on_tick(active)


def tune_gc() -> None:
    """Freeze the objects built at start-up and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
