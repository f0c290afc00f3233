"""Per-worker process set-up: a listening socket of its own, connections that do not stay
forever, and a garbage collector tuned for a server.

**Both workers busy.** ``bentoml serve`` binds one listening socket and hands it to every
worker (``--fd N``). Each worker's event loop accepts in a loop until the queue is empty,
so a client that opens its keep-alive connections at once (wrk, a proxy, an ingress) can
land all of them on the worker that woke first, and they stay there. With
``FMNIST_REUSE_PORT`` (default on) worker 1 keeps the inherited socket and every other
worker puts a socket of its own, bound to the same address with ``SO_REUSEPORT``, in its
place before uvicorn starts listening: the kernel then spreads new connections over the
sockets by a hash of their addresses. (The inherited socket gets ``SO_REUSEPORT`` too, so
that the kernel puts all of them in one group.) If anything is not as expected the worker
keeps the shared socket and says so in the log: never worse than before. A hash spreads
32 connections unevenly now and then (one worker gets 20 or more of 32 in about one run
of five), and kept-alive connections never move, so :class:`KeepAliveLimit` closes a
connection after ``FMNIST_KEEPALIVE_REQUESTS`` requests (as nginx's
``keepalive_requests`` does): the client reconnects and is hashed afresh, and over a few
seconds each worker's share tends to its fair part.

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
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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


class KeepAliveLimit:
    """ASGI middleware: answer the ``max_requests``-th request of a connection with
    ``Connection: close`` (uvicorn then closes it after the response). 0: no limit."""

    MAX_TRACKED = 65_536  # connections remembered at once; forgotten all together beyond

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self._served: dict[Any, int] = {}  # (client host, port) -> requests on it so far

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or self.max_requests <= 0 or client is None:
            await self.app(scope, receive, send)
            return
        count = self._served.get(client, 0) + 1
        if count < self.max_requests:
            if len(self._served) >= self.MAX_TRACKED:
                self._served.clear()
            self._served[client] = count
            await self.app(scope, receive, send)
            return
        self._served.pop(client, None)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)


def tune_gc() -> None:
    """Freeze the objects built at start-up and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
