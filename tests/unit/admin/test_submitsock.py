"""The submit socket: local users hand mail to the running pigeon, as who the kernel says."""

from __future__ import annotations

import os
import pwd
import socket
import stat

import pytest

from pigeon.admin import localsubmit as L
from pigeon.admin.stdio_smtp import SocketStore, run_stdio_session
from pigeon.admin.submitsock import SubmitServer, SubmitUnavailable, reachable, submit
from pigeon.config.session import session_config
from pigeon.testing.storage import content_bytes

ME = pwd.getpwuid(os.getuid()).pw_name


def content(b, qid: str) -> bytes:
    return content_bytes(b.store, qid)


def request(**kw):
    return {
        "recipients": ["bob@example.org"],
        "extract": False,
        "sender": None,
        "fullname": "",
        "raw": False,
        **kw,
    }


def test_socket_is_open_to_everyone_and_its_directory_searchable(backend):
    path = backend.config.submit_socket
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o666
    assert path.parent.stat().st_mode & 0o011 == 0o011
    # pigeon's umask makes data_dir 0700 (and dropping root resets it): publish()
    # adds search permission only, never read.
    os.chmod(path.parent, 0o700)
    os.chmod(path, 0o600)
    backend.handle.publish()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o711
    assert stat.S_IMODE(path.stat().st_mode) == 0o666


def test_trusted_user_may_set_the_sender_and_the_message_is_fixed_up(backend):
    answer = submit(
        backend.config.submit_socket,
        request(sender="cron@example.test", fullname="Cron"),
        b"To: bob@example.org\nSubject: hi\n\nbody\n",
    )
    qid = answer["queue_id"]
    entry = backend.store.entry(qid)
    assert entry.envelope.sender == "cron@example.test" == answer["sender"]
    assert entry.envelope.protocol == "local"
    data = content(backend, qid)
    assert data.startswith(f"Received: from local user (uid {os.getuid()})".encode())
    assert b"From: Cron <cron@example.test>\r\n" in data and b"Message-ID: <" in data
    assert b"\r\n\r\nbody\r\n" in data
    (line,) = backend.maillog.for_id(qid)
    assert line.detail == "queued" and line.fields["uid"] == os.getuid()
    assert any(e.queue_id == qid for e in backend.manager._sched.fresh)  # handed to the manager


def untrusted_server(backend, tmp_path):
    server = SubmitServer(
        tmp_path / "untrusted.sock",
        config=backend.config,
        store=backend.store,
        on_queued=backend.manager.submit,
        maillog=backend.maillog,
        trusted_uids=set(),
    )
    backend.call(server.start())
    return server


def test_untrusted_user_is_the_sender_whatever_it_asks(backend, tmp_path):
    server = untrusted_server(backend, tmp_path)
    try:
        answer = submit(
            server.path, request(sender="ceo@example.test"), b"Subject: pay me\n\nplease\n"
        )
        assert answer["sender"] == f"{ME}@example.test"
        data = content(backend, answer["queue_id"])
        assert f"From: {ME}@example.test\r\n".encode() in data
        assert b"ceo@" not in data
        answer = submit(server.path, request(sender=""), b"Subject: x\n\nx\n")
        assert answer["sender"] == f"{ME}@example.test"  # not the null sender either
    finally:
        backend.call(server.close())


def test_refusals_carry_sysexits_codes(backend, tmp_path):
    path = backend.config.submit_socket
    with pytest.raises(L.SubmitError) as bad:
        submit(path, request(recipients=["a b@@c"]), b"x\n")
    assert bad.value.code == L.EX_NOUSER
    with pytest.raises(L.SubmitError) as none:
        submit(path, request(recipients=[]), b"Subject: x\n\nx\n")
    assert none.value.code == L.EX_USAGE
    with pytest.raises(L.SubmitError) as types:
        submit(path, request(recipients="bob@example.org"), b"x\n")
    assert types.value.code == L.EX_USAGE


def test_too_big_is_refused_before_the_content_is_read(backend):
    limit = backend.config.limits.message_size
    big = b"x" * (limit + 1)
    with pytest.raises(L.SubmitError) as err:
        submit(backend.config.submit_socket, request(), big)
    assert err.value.code == L.EX_DATAERR and "too big" in str(err.value)
    assert backend.store.list() == []


def test_a_client_that_sends_half_and_leaves_queues_nothing(backend):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(backend.config.submit_socket))
        s.sendall(b'{"recipients": ["bob@example.org"], "size": 100}\nonly part')
    assert reachable(backend.config.submit_socket) is None  # still serving
    assert backend.store.list() == []


def test_nothing_listening_is_unavailable(tmp_path):
    with pytest.raises(SubmitUnavailable):
        submit(tmp_path / "none.sock", request(), b"x\n")
    with pytest.raises(SubmitUnavailable):
        reachable(tmp_path / "none.sock")


def test_sendmail_bs_over_the_socket(backend, tmp_path):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(
        in_w,
        b"EHLO localhost\r\nMAIL FROM:<x@example.test>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    )
    os.close(in_w)
    store = SocketStore(lambda req, data: submit(backend.config.submit_socket, req, data))
    ids = run_stdio_session(
        store, session_config(backend.config), fd_in=in_r, fd_out=out_w, add_received=False
    )
    os.close(out_w)
    os.close(in_r)
    with os.fdopen(out_r, "rb") as out:
        transcript = out.read()
    assert len(ids) == 1 and f"250 2.0.0 Ok: queued as {ids[0]}".encode() in transcript
    data = content(backend, ids[0])
    assert data.count(b"Received:") == 1 and data.startswith(b"Received: from local user")
    assert b"Subject: bs\r\n\r\nhi\r\n" in data


def test_prepare_raw_keeps_the_message():
    p = L.prepare_raw(b"Subject: x\r\n\r\nhi\r\n", recipients=["bob"], domain="example.test")
    assert p.recipients == ["bob@example.test"] and p.headers == [b"Subject: x\r\n"]
    with pytest.raises(L.SubmitError):
        L.prepare_raw(b"x", recipients=[], domain="example.test")


def test_a_stalled_client_is_cut_off_after_data_total(backend, tmp_path):
    import dataclasses

    quick = dataclasses.replace(
        backend.config, timeouts=dataclasses.replace(backend.config.timeouts, data_total=0.3)
    )
    server = SubmitServer(
        tmp_path / "quick.sock", config=quick, store=backend.store, on_queued=backend.manager.submit
    )
    backend.call(server.start())
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(server.path))
            s.sendall(b'{"recipients": ["bob@example.org"], "size": 100}\nsome')
            assert s.recv(100) == b""  # closed by the server, no answer
    finally:
        backend.call(server.close())
    assert backend.store.list() == []
