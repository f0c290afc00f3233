"""Per-worker set-up (service/workers.py): the socket of its own, the keep-alive limit, GC."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from pathlib import Path

import pytest

from service.workers import (
    GC_THRESHOLDS,
    KeepAliveLimit,
    WorkerConnections,
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


def test_every_worker_sees_the_others_counts_and_its_own_excess(tmp_path: Path) -> None:
    path = tmp_path / "connections.bin"
    one, two = WorkerConnections(path, 2, 1), WorkerConnections(path, 2, 2)
    one.publish(6, now=100.0)
    two.publish(2, now=100.0)
    assert one.counts(100.5) == two.counts(100.5) == [6, 2]
    assert one.excess(6, 100.5) == 2  # fair share: ceil(8 / 2) = 4
    assert two.excess(2, 100.5) == 0
    assert one.excess(5, 100.5) == 1  # its own count is the one it is given, not its slot
    # A worker that has not written for stale_s counts as holding nothing.
    assert one.counts(103.0) == [0, 0] and one.excess(6, 103.0) == 3
    three = WorkerConnections(tmp_path / "three.bin", 3, 3)
    three.publish(7, now=1.0)
    assert three.excess(7, 1.0) == 4  # ceil(7 / 3) = 3
    with pytest.raises(ValueError, match="not in 1..2"):
        WorkerConnections(path, 2, 3)
    for table in (one, two, three):
        table.close()


def test_a_table_that_cannot_be_made_leaves_the_worker_unbalanced_not_dead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="service.workers"):
        assert WorkerConnections.open(tmp_path / "missing" / "t.bin", 2, 1) is None
        assert WorkerConnections.open(tmp_path / "t.bin", 2, 5) is None
    assert len(caplog.records) == 2
    assert all("not balanced" in r.getMessage() for r in caplog.records)
    table = WorkerConnections.open(tmp_path / "t.bin", 2, 2)
    assert table is not None and table.counts(0.0) == [0, 0]
    table.close()


def test_a_worker_over_its_share_closes_only_its_excess_connections(tmp_path: Path) -> None:
    path = tmp_path / "connections.bin"
    now = [0.0]
    ticks: dict[str, list[int]] = {"one": [], "two": []}
    rebalanced = {"one": 0, "two": 0}

    def limit(name: str, index: int) -> KeepAliveLimit:
        def count() -> None:
            rebalanced[name] += 1

        return KeepAliveLimit(
            _ok,
            max_requests=0,
            balance=WorkerConnections(path, 2, index),
            on_tick=ticks[name].append,
            on_rebalance=count,
            clock=lambda: now[0],
        )

    one, two = limit("one", 1), limit("two", 2)
    mine = [("10.0.0.1", port) for port in range(6)]
    theirs = [("10.0.0.2", port) for port in range(2)]

    async def round_of(app: KeepAliveLimit, clients: list) -> list[bool]:
        return [(b"connection", b"close") in await _request(app, c) for c in clients]

    moved = [("10.0.0.1", port) for port in (100, 101)]  # the closed two, reconnected

    async def go() -> list[list[bool]]:
        rounds = [await round_of(one, mine + mine), await round_of(two, theirs + theirs)]
        for at in (0.15, 0.3):  # each tick: every worker counts what it saw, reads the other
            now[0] = at
            rounds += [await round_of(two, theirs), await round_of(one, mine)]
        now[0] = 0.35  # the closed connections come back, hashed to worker two this time
        rounds += [await round_of(two, moved + moved)]
        now[0] = 0.45
        rounds += [await round_of(two, theirs + moved), await round_of(one, mine[2:])]
        return rounds

    rounds = asyncio.run(go())
    start_one, start_two, tick1_two, tick1_one, tick2_two, tick2_one, back, *last = rounds
    # 6 + 2 kept-alive connections: the fair share is 4. Worker one sees its excess of 2 at
    # one tick, closes nothing yet, sees it again at the next and closes exactly 2 ...
    assert not any(start_one + start_two + tick1_two + tick1_one + tick2_two + back)
    assert tick2_one == [True, True, False, False, False, False]
    # ... and once they are served by worker two (4 + 4), nobody closes any.
    assert not any(last[0] + last[1])
    assert rebalanced == {"one": 2, "two": 0}
    # One-off connections are not counted: at the first tick each had sent one request.
    assert ticks["one"] == [0, 6, 6, 4] and ticks["two"] == [0, 2, 2, 4]


def test_tune_gc_freezes_start_up_objects_and_sets_server_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # start-up objects are no longer scanned
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
