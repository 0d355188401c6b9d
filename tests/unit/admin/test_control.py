"""ControlServer + ControlClient: the JSON-lines protocol, errors, socket safety."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import time

import pytest

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.admin.control import ControlError, ControlServer, OpError


async def echo(**kw):
    return kw


async def refuse(id: str):
    raise OpError(f"no such message: {id}")


async def crash():
    raise RuntimeError("secret detail")


HANDLERS = {"echo": echo, "refuse": refuse, "crash": crash}


def serve(path, handlers=HANDLERS, **kw):
    """Run a ControlServer in a background loop; returns (server, stop)."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    server = ControlServer(path, handlers, **kw)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)

    def stop():
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)

    return server, stop


def test_request_answer_and_errors(tmp_path, caplog):
    path = tmp_path / "control.sock"
    _, stop = serve(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = ControlClient(path)
        assert client.call("echo", a=1, b=["x"]) == {"a": 1, "b": ["x"]}
        with pytest.raises(RemoteError, match="no such message: Q1"):
            client.call("refuse", id="Q1")
        with pytest.raises(RemoteError, match="bad arguments"):
            client.call("refuse")
        with pytest.raises(RemoteError, match="unknown operation 'nope'"):
            client.call("nope")
        with pytest.raises(RemoteError) as info:
            client.call("crash")
        assert "internal error" in str(info.value) and "secret" not in str(info.value)
        assert "secret detail" in caplog.text  # the private face goes to the log
        with client:  # many requests on one connection
            assert [client.call("echo", n=i)["n"] for i in range(5)] == list(range(5))
    finally:
        stop()
    assert not path.exists()


async def disk_full():
    from pigeon.queue.store import StoreError

    raise StoreError("queue move: database or disk is full", disk_full=True)


def test_a_full_disk_is_said_plainly_without_a_traceback(tmp_path, caplog):
    path = tmp_path / "control.sock"
    _, stop = serve(path, {"flush": disk_full})
    try:
        with pytest.raises(RemoteError, match="flush: the queue storage is failing"):
            ControlClient(path).call("flush")
    finally:
        stop()
    assert "database or disk is full" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_garbage_gets_an_error_and_a_close(tmp_path):
    path = tmp_path / "c.sock"
    _, stop = serve(path)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            s.sendall(b"this is not json\n")
            assert b'"ok":false' in s.recv(1000)
            assert s.recv(1000) == b""
    finally:
        stop()


def test_not_running_is_a_clear_error(tmp_path):
    with pytest.raises(ControlUnavailable, match="pigeon is not running"):
        ControlClient(tmp_path / "none.sock").call("echo")


def test_stale_socket_is_replaced_live_one_is_not(tmp_path):
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # left behind, nobody listening
    _, stop = serve(path)
    try:
        assert ControlClient(path).call("echo", x=1) == {"x": 1}
        second = ControlServer(path, HANDLERS)
        with pytest.raises(ControlError, match="another pigeon"):
            asyncio.run(second.start())
    finally:
        stop()


def test_paths_longer_than_sun_path_work(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    assert len(str(path)) > 108
    _, stop = serve(path)
    try:
        assert ControlClient(path).call("echo", ok=True) == {"ok": True}
    finally:
        stop()


async def big(n: int):
    return "x" * n


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Whether the server closes `s` within `timeout` (reads and drops what comes)."""
    s.settimeout(timeout)
    try:
        while s.recv(1 << 16):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_silent_client_is_cut_off(tmp_path):
    # Every wait on a client is bounded (CONTRIBUTING.md, rule 4): one that
    # connects and never sends its request does not hold its slot forever.
    path = tmp_path / "control.sock"
    _, stop = serve(path, io_timeout=0.3)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            assert _closed_by_server(s, 5.0)
    finally:
        stop()


def test_a_client_that_never_reads_is_cut_off(tmp_path):
    path = tmp_path / "control.sock"
    _, stop = serve(path, {"big": big}, io_timeout=0.3)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(str(path))
            request = b'{"op": "big", "n": 4000000}\n'
            s.sendall(request * 8)  # answers pile up unread
            time.sleep(1.0)  # > io_timeout: the drain gave up
            assert _closed_by_server(s, 5.0)
    finally:
        stop()
