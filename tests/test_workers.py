"""Per-worker set-up (service/workers.py): the socket of its own, the keep-alive limit, GC."""

from __future__ import annotations

import asyncio
import gc
import os
import socket

import pytest

from service.workers import (
    GC_THRESHOLDS,
    KeepAliveLimit,
    inherited_fd,
    own_listening_socket,
    tune_gc,
)


def test_the_inherited_descriptor_is_read_from_the_worker_command_line() -> None:
    assert inherited_fd(["service", "--fd", "6", "--worker-id", "2"]) == 6
    assert inherited_fd(["service", "--fd=9"]) == 9
    assert inherited_fd(["service", "--fd", "$(circus.sockets._bento_api_server)"]) is None
    assert inherited_fd(["service"]) is None


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="Linux only")
def test_a_second_worker_gets_its_own_socket_on_the_same_port_and_both_accept() -> None:
    shared = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    shared.bind(("127.0.0.1", 0))
    shared.listen(64)
    port = shared.getsockname()[1]
    worker_fd = os.dup(shared.fileno())  # what a second worker inherits
    try:
        assert own_listening_socket(worker_fd, worker_index=1) is False  # worker 1 keeps it
        assert own_listening_socket(worker_fd, worker_index=2) is True
        own = socket.socket(fileno=worker_fd)
        assert own.getsockname() == ("127.0.0.1", port)
        assert own.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        shared.setblocking(False)
        own.setblocking(False)
        clients, accepted = [], {"shared": 0, "own": 0}
        for _ in range(64):  # the kernel hashes each connection to one of the two sockets
            c = socket.create_connection(("127.0.0.1", port))
            clients.append(c)
        for name, s in (("shared", shared), ("own", own)):
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[name] += 1
        for c in clients:
            c.close()
        assert sum(accepted.values()) == 64
        assert accepted["shared"] > 0 and accepted["own"] > 0, accepted
        own.close()
    finally:
        shared.close()


def test_a_descriptor_that_is_not_a_listening_socket_is_left_alone() -> None:
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never listened
    fd = os.dup(plain.fileno())
    try:
        assert own_listening_socket(fd, worker_index=2) is False
        probe = socket.socket(fileno=os.dup(fd))
        assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        probe.close()
    finally:
        os.close(fd)
        plain.close()


async def _request(app: KeepAliveLimit, client: tuple[str, int]) -> list[tuple[bytes, bytes]]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "client": client, "path": "/"}, receive, send)
    return list(sent[0]["headers"])


async def _ok(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def test_the_keep_alive_limit_closes_a_connection_after_its_nth_request() -> None:
    app = KeepAliveLimit(_ok, max_requests=3)

    async def go() -> list[bool]:
        closes = []
        for _ in range(7):
            headers = await _request(app, ("127.0.0.1", 5000))
            closes.append((b"connection", b"close") in headers)
            assert (b"x", b"1") in headers  # the app's own headers are kept
        other = await _request(app, ("127.0.0.1", 5001))
        closes.append((b"connection", b"close") in other)
        return closes

    assert asyncio.run(go()) == [False, False, True, False, False, True, False, False]
    unlimited = KeepAliveLimit(_ok, max_requests=0)
    assert all(
        (b"connection", b"close") not in asyncio.run(_request(unlimited, ("h", 1)))
        for _ in range(5)
    )


def test_tune_gc_freezes_start_up_objects_and_sets_server_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # start-up objects are no longer scanned
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
