"""A worker's part in a rollout: it follows the aliases file, and it drains on SIGTERM.

**Promotion and rollback reload in place.** Every worker keeps each served version
loaded, so moving an alias only swaps which version a name means. :class:`AliasWatcher`
looks at the aliases file every ``FMNIST_ALIASES_POLL_S`` (a ``stat``), and when it changed
reads it, loads any version it names that the worker does not hold yet (from
``FMNIST_MODEL_DIR`` or the model store), and then replaces the worker's routing in one
assignment: a request resolves against the old aliases or the new ones, never a mix, and
no request waits for a load. A file that cannot be read, or names a version that cannot
be loaded, changes nothing: the old aliases keep serving, the worker logs why and counts
it (``fmnist_aliases_reloads_total{result="rejected"}``), as Triton keeps a model's old
version when the new one fails to load. Who can promote is who can write the file: a
deploy setting, never an HTTP route.

**SIGTERM drains.** Kubernetes sends SIGTERM on every rollout, and uvicorn on SIGTERM
closes its listening socket and every idle kept-alive connection at once: a client that
sends its next request on such a connection as it closes loses it ("cut mid-request").
:class:`Drain` takes SIGTERM first: readiness turns 503 (the pod leaves the Service's
endpoints), every answer carries ``Connection: close`` (clients reconnect elsewhere,
having had their answer), and new connections are still accepted and answered. When no
request came for ``FMNIST_DRAIN_QUIET_S``, or after ``FMNIST_DRAIN_S`` at most, the
listening socket stops taking connections: first the kernel stops completing handshakes
(a socket filter that drops every packet to the listener: a new client's SYN goes
unanswered), then the connections already waiting are accepted, and only when none waits
does it ``shutdown`` (a client that retries is refused, never cut); uvicorn's own shutdown
finishes the requests in flight.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from service.versions import AliasTable, read_aliases

log = logging.getLogger(__name__)

# (mtime_ns, size, inode) of the aliases file; None when it is missing
FileStamp = tuple[int, int, int] | None


def stamp(path: Path) -> FileStamp:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AliasWatcher:
    """Polls the aliases file in a thread of its own and hands a changed file to ``apply``,
    which raises to keep the old aliases (see the module)."""

    def __init__(
        self,
        path: Path,
        poll_s: float,
        apply: Callable[[AliasTable], None],
        on_result: Callable[[str], None],
        seen: FileStamp,
    ) -> None:
        self.path, self.poll_s = path, poll_s
        self._apply, self._on_result = apply, on_result
        self._seen = seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aliases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """Apply the file if it changed since last seen; True when it was applied."""
        now = stamp(self.path)
        if now == self._seen:
            return False
        self._seen = now
        try:
            self._apply(read_aliases(self.path))
        except Exception as exc:  # any failure keeps the old aliases serving
            log.error("aliases in %s not applied, the old ones keep serving: %s", self.path, exc)
            self._on_result("rejected")
            return False
        self._on_result("applied")
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()


class Drain:
    """SIGTERM → drain, then uvicorn's shutdown (see the module). ``install`` is called in
    the worker's main thread once uvicorn has set its own handler (on the first request)."""

    LISTEN_GRACE_S = 0.3  # after the socket stops listening: accepted ones are answered
    HANDSHAKE_S = 0.25  # after the backlog shrinks: late handshakes complete and are accepted

    def __init__(
        self,
        max_s: float,
        quiet_s: float,
        listening_fd: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_s, self.quiet_s = max_s, quiet_s
        self.listening_fd = listening_fd
        self._clock = clock
        self.active = False  # draining: not ready, every answer closes its connection
        self.installed = False
        self.last_request = clock()
        self._original: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        self.installed = True
        if self.max_s <= 0 or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._original = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def seen(self) -> None:
        self.last_request = self._clock()

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self.active or self._loop is None:
            return
        self.active = True
        self._loop.call_soon_threadsafe(self._begin, sig)

    def _begin(self, sig: int) -> None:
        log.info("SIGTERM: draining (readiness 503, every answer closes its connection)")
        self._task = asyncio.get_running_loop().create_task(self._run(sig))

    async def _run(self, sig: int) -> None:
        started = self._clock()
        while True:
            now = self._clock()
            if now - started >= self.max_s or now - self.last_request >= self.quiet_s:
                break
            await asyncio.sleep(0.05)
        # Stop listening at an instant when no connection waits in the kernel's accept queue
        # (it would be reset under a request its client already sent). First no new
        # connection may enter the queue: new clients' SYNs are dropped (they retry in a
        # second and find the socket gone: refused); then the queue empties as the workers
        # accept, and the check and the shutdown run in one step of the event loop.
        self._listening_socket(refuse_new_connections)
        # A handshake under way when the filter came completes: wait for those before the
        # check (without a filter, a SYN the full backlog dropped retries after 200 ms).
        await asyncio.sleep(self.HANDSHAKE_S)
        for _ in range(1000):
            if self._stop_listening_if_idle():
                break
            await asyncio.sleep(0.001)
        else:
            self._stop_listening_if_idle(force=True)
        await asyncio.sleep(self.LISTEN_GRACE_S)  # the last accepted connections are answered
        log.info("drained after %.1fs; shutting down", self._clock() - started)
        original = self._original
        if callable(original):
            original(sig, None)
        else:  # no handler of uvicorn's: the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), sig)

    def _stop_listening_if_idle(self, force: bool = False) -> bool:
        """``shutdown`` the listening socket (it stops listening for every process that
        holds it: new clients are refused) when its accept queue is empty, or ``force``."""

        def stop(sock: socket.socket) -> bool:
            if not force and accept_queue(sock) > 0:
                return False
            sock.shutdown(socket.SHUT_RD)
            return True

        return self._listening_socket(stop, default=True)

    def _listening_socket(self, act: Callable[[socket.socket], Any], default: Any = None) -> Any:
        """``act`` on a duplicate of the worker's listening socket; ``default`` when there is
        none or the socket refuses (an OSError: it is already closed)."""
        if self.listening_fd is None:
            return default
        try:
            sock = socket.socket(fileno=os.dup(self.listening_fd))
        except OSError:
            return default
        try:
            return act(sock)
        except OSError:
            return default
        finally:
            sock.close()


SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value
# A classic BPF program of one instruction, BPF_RET | BPF_K with k = 0: keep no byte of
# any packet, i.e. drop it (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k).
DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)


def refuse_new_connections(sock: socket.socket) -> None:
    """Make the kernel drop every new SYN to listening ``sock`` (and to every process that
    shares it), so that its accept queue can only shrink: a socket filter that keeps no
    packet (Linux's SO_ATTACH_FILTER). Where there is none, a backlog of 0 drops new SYNs
    whenever one connection waits, the next best thing."""
    program = (ctypes.c_ubyte * len(DROP_ALL)).from_buffer_copy(DROP_ALL)
    # struct sock_fprog: u16 len, padding, then a pointer to the instructions.
    fprog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        sock.listen(0)


def accept_queue(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (Linux: tcp_info's
    ``tcpi_unacked`` of a LISTEN socket); 0 where the kernel does not say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack_from("8B5I", info)[12]) if len(info) >= 28 else 0
