"""service/lifecycle.py without a server: the aliases watcher and the accept-queue probe."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from service.lifecycle import AliasWatcher, accept_queue, stamp
from service.versions import AliasError, AliasTable, write_aliases


def test_the_watcher_applies_a_changed_file_once_and_keeps_the_old_on_failure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aliases.json"
    applied: list[AliasTable] = []
    results: list[str] = []

    def apply(table: AliasTable) -> None:
        if table.get("baseline", {}).get("production") == "ffffffffffff":
            raise AliasError("baseline@production names version ffffffffffff, not there")
        applied.append(table)

    watcher = AliasWatcher(path, 0.05, apply, results.append, stamp(path))
    assert not watcher.check()  # no file, unchanged: nothing to do
    write_aliases(path, {"baseline": {"production": "aaaaaaaaaaaa"}})
    assert watcher.check() and applied == [{"baseline": {"production": "aaaaaaaaaaaa"}}]
    assert not watcher.check()  # the same file again: not applied twice
    write_aliases(path, {"baseline": {"production": "ffffffffffff"}})
    assert not watcher.check()
    path.write_text("{half a file")
    assert not watcher.check()
    assert results == ["applied", "rejected", "rejected"] and len(applied) == 1
    watcher.start()  # the thread does the same on its own
    write_aliases(path, {"baseline": {"production": "bbbbbbbbbbbb"}})
    deadline = time.monotonic() + 5
    while len(applied) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.stop()
    assert applied[-1] == {"baseline": {"production": "bbbbbbbbbbbb"}}


def test_accept_queue_counts_the_connections_waiting_to_be_accepted() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        assert accept_queue(server) == 0
        clients = [socket.create_connection(server.getsockname()) for _ in range(3)]
        time.sleep(0.05)
        assert accept_queue(server) == 3
        server.accept()[0].close()
        assert accept_queue(server) == 2
        for c in clients:
            c.close()


def test_refuse_new_connections_drops_new_handshakes_and_keeps_the_waiting_ones() -> None:
    """The drain's last step: after it, a new client gets no connection (its SYN is
    dropped), the one already waiting is still accepted, and after shutdown a client is
    refused."""
    from service.lifecycle import refuse_new_connections

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        waiting = socket.create_connection(("127.0.0.1", port), timeout=2)
        refuse_new_connections(server)
        assert accept_queue(server) == 1
        accepted, _ = server.accept()
        waiting.sendall(b"x")
        assert accepted.recv(1) == b"x"  # the connection that waited is whole
        accepted.close()
        # The queue is empty now, and still no new connection gets in (a backlog of 0
        # would let this one in: it drops SYNs only while one connection waits).
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5)
        waiting.close()
        server.shutdown(socket.SHUT_RD)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
