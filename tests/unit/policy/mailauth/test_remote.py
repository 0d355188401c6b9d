"""The checker process (app/checker.py, policy/mailauth/remote.py): a real child
process over a socket pair, the same loopback DNS server as the other tests.

What must hold: the process gives the very verdicts the server would give
inline; when it dies, answers garbage or hangs, the server checks the message
itself (never accepts it unchecked) and starts a new process later."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
from pathlib import Path

import pytest
from conftest import AUTHSERV, CLIENT, FORGER, Sink, results

from pigeon.app.checker import CheckerSpawner
from pigeon.config import load_config
from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.policy.api import SessionFacts
from pigeon.policy.mailauth import CheckerPool, RemoteChecks, build_mail_auth
from pigeon.policy.mailauth.remote import _Unpickler, frame, read_frames
from pigeon.policy.message import SpoolMessage
from pigeon.policy.relay import RelayNetworks
from pigeon.proto.params import RcptParams
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.testing.mailauthkit import message
from pigeon.vocab.address import Address


class RemoteHarness:
    """The stage twice over one configuration: checks in a child process, and inline."""

    def __init__(
        self,
        dns_port: int,
        tmp_path: Path,
        *,
        wait: bool = True,
        members: int = 0,
        **remote_options,
    ) -> None:
        self.config = load_config(
            overrides={
                "hostname": AUTHSERV,
                "mail_auth": {
                    "spf": "enforce",
                    "dkim": "annotate",
                    "dmarc": "enforce",
                    "checker_above": 0,  # every message to the process
                },
                "delivery": {"dns_servers": [f"127.0.0.1:{dns_port}"], "dns_timeout": 1.0},
                "reports": {"dmarc": True},  # so the DMARC records come back too
            }
        )
        self.runner = asyncio.Runner()
        self.spawners = [CheckerSpawner(self.config) for _ in range(max(1, members))]
        self.spawner = self.spawners[0]
        made = [
            RemoteChecks(s.spawn(), respawn=s.spawn, reap=s.close, **remote_options)
            for s in self.spawners
        ]
        # members=0: one RemoteChecks alone; else a pool of that many (pool.py)
        self.remote = made[0] if members == 0 else CheckerPool(made)
        networks = RelayNetworks(self.config.relay_networks)
        resolver = CachingResolver(StubResolver([("127.0.0.1", dns_port)], timeout=1.0))
        self.remote_sink, self.inline_sink = Sink(), Sink()
        self.remote_check = build_mail_auth(
            self.config, resolver, networks, self.remote_sink, remote=self.remote
        )
        self.inline_check = build_mail_auth(self.config, resolver, networks, self.inline_sink)
        self.store = QueueStore(tmp_path / "queue", fsync=False)
        self.store.open()
        if wait:  # until it is ready the server checks inline (remote.py)
            assert self.runner.run(self.remote.wait_ready(30.0)), "the checker never got ready"

    def _message(self, content: bytes, ip: str):
        """The message spooled as the server has it at the end of the data, and its facts."""
        spool = self.store.new_spool(Envelope("", "alice@example.org", [Recipient("bob@x.test")]))
        spool.write(b"Received: from client ([" + ip.encode() + b"])\r\n\tby mx; now\r\n")
        spool.write(content)
        facts = SessionFacts(
            ip,
            helo="mail.example.org",
            sender=Address("alice", "example.org"),
            recipients=[(Address("bob", "x.test"), RcptParams())],
        )
        return spool, facts, SpoolMessage(spool, header_limit=1 << 20, eight_bit=False)

    def run(self, content: bytes, *, remote: bool = True, ip: str = CLIENT):
        spool, facts, msg = self._message(content, ip)
        check = self.remote_check if remote else self.inline_check
        try:
            return self.runner.run(check.end_of_data(facts, msg))
        finally:
            spool.discard()

    def run_together(self, contents: list[bytes]) -> list:
        """The messages' checks started at once, as sessions that end together."""
        made = [self._message(content, CLIENT) for content in contents]

        async def together():
            return await asyncio.gather(
                *(self.remote_check.end_of_data(facts, msg) for _, facts, msg in made)
            )

        try:
            return self.runner.run(together())
        finally:
            for spool, _, _ in made:
                spool.discard()

    def child_pids(self) -> list[int]:
        return [c.pid for s in self.spawners for c in s._children if c.poll() is None]

    def close(self) -> None:
        self.remote.close()
        self.runner.close()
        self.store.close()


@pytest.fixture
def remote_harness(dns_server, tmp_path):
    made: list[RemoteHarness] = []

    def make(**options) -> RemoteHarness:
        h = RemoteHarness(dns_server.port, tmp_path / f"r{len(made)}", **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _same(a, b) -> None:
    """Two verdicts alike but for the DKIM signature's own b= prefix (none here)."""
    assert a.reply == b.reply
    assert a.transport == b.transport
    assert [(f.name, f.value) for f in a.headers] == [(f.name, f.value) for f in b.headers]


def test_the_checker_process_gives_the_verdicts_the_server_gives_inline(remote_harness, keys):
    h = remote_harness()
    before = h.remote.answered
    cases = [
        keys.ed.sign(keys.rsa.sign(message())),  # pass
        keys.rsa.sign(message(body="Pay 10 EUR.\r\n")).replace(b"10 EUR", b"99 EUR"),
        message(sender="alice@quarantine.example"),  # p=quarantine
        keys.other.sign(message()),  # a signature of another domain: SPF aligns
    ]
    for content in cases:
        _same(h.run(content), h.run(content, remote=False))
    # The DMARC records reach the server's sink, as inline.
    assert len(h.remote_sink.records) == len(h.inline_sink.records) > 0
    assert "dkim=pass" in results(h.run(cases[0]))
    assert h.child_pids()
    assert h.remote.answered - before == len(cases) + 1, "the checks ran in the child process"
    # SPF fail of a forging client: refused by the process as inline.
    forged = h.run(message(), ip=FORGER)
    assert forged.reply is not None and forged.reply.code == 550


def test_messages_do_not_wait_for_a_checker_that_is_starting(remote_harness, keys):
    h = remote_harness(wait=False)
    (pid,) = h.child_pids()
    os.kill(pid, signal.SIGSTOP)  # still importing: it cannot have said it is ready
    try:
        signed = keys.rsa.sign(message())
        assert "dkim=pass" in results(h.run(signed))
        assert h.remote.answered == 0, "checked inline, not sent to the process"
        os.kill(pid, signal.SIGCONT)
        assert h.runner.run(h.remote.wait_ready(30.0))
        assert "dkim=pass" in results(h.run(signed))
        assert h.remote.answered == 1, "once ready, the process checks"
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_dns_failure_in_the_process_is_451_as_inline(remote_harness, keys):
    h = remote_harness()
    verdict = h.run(keys.half.sign(message(sender="alice@half.example")))
    assert verdict.reply is not None and verdict.reply.code == 451


def test_a_checker_that_dies_is_replaced_and_no_message_goes_unchecked(
    remote_harness, keys, caplog
):
    h = remote_harness(retry_after=0.0)
    signed = keys.rsa.sign(message())
    assert "dkim=pass" in results(h.run(signed))
    assert h.remote.answered == 1
    (pid,) = h.child_pids()
    os.kill(pid, signal.SIGKILL)
    # The next message: the channel breaks, the server checks it itself...
    verdict = h.run(signed)
    assert "dkim=pass" in results(verdict)
    assert "checker process" in caplog.text
    # ...and a new process takes over, once it is ready.
    assert h.runner.run(h.remote.wait_ready(30.0))
    assert "dkim=pass" in results(h.run(signed))
    assert h.child_pids() and pid not in h.child_pids()
    assert h.remote.answered == 2


def test_a_checker_that_does_not_answer_in_time_is_not_waited_for(remote_harness, keys):
    h = remote_harness(timeout=0.5, retry_after=3600.0)
    (pid,) = h.child_pids()
    os.kill(pid, signal.SIGSTOP)  # alive, holding its socket, silent
    try:
        verdict = h.run(keys.rsa.sign(message()))
        assert "dkim=pass" in results(verdict)  # checked inline after 0.5 s
    finally:
        os.kill(pid, signal.SIGKILL)


def test_no_checker_at_all_means_inline_checks(dns_server, tmp_path, keys):
    h = RemoteHarness(dns_server.port, tmp_path, wait=False)
    h.remote.close()
    h.remote = RemoteChecks(None, respawn=lambda: None)
    h.remote_check.remote = h.remote
    try:
        assert "dkim=pass" in results(h.run(keys.rsa.sign(message())))
    finally:
        h.close()


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_answers_are_unpickled_with_an_allow_list():
    import io

    with pytest.raises(pickle.UnpicklingError):
        _Unpickler(io.BytesIO(pickle.dumps(_Evil()))).load()
    with pytest.raises(pickle.UnpicklingError):
        _Unpickler(io.BytesIO(pickle.dumps(Path("/")))).load()


def test_frames_split_anywhere_are_put_back_together():
    data = frame(("check", 1, "x" * 1000)) + frame(("config", None))
    for cut in range(len(data) + 1):
        buffer = bytearray(data[:cut])
        got = read_frames(buffer)
        buffer += data[cut:]
        got += read_frames(buffer)
        assert [pickle.loads(p) for p in got] == [("check", 1, "x" * 1000), ("config", None)]
        assert not buffer
    with pytest.raises(ValueError):
        read_frames(bytearray(b"\xff\xff\xff\xff"))


def test_an_answer_that_would_split_the_header_is_refused():
    from pigeon.policy.mailauth.remote import decode

    smuggled = (None, (("Authentication-Results", "x\r\nBcc: eve@example.net"),), None, None)
    with pytest.raises(ValueError):
        decode(smuggled)
    with pytest.raises((TypeError, ValueError)):
        decode(("not", "an", "answer"))


# -- several processes (policy/mailauth/pool.py) ------------------------------


def test_checks_that_arrive_together_are_shared_by_the_pool(remote_harness, keys):
    h = remote_harness(members=2)
    signed = keys.rsa.sign(message())
    verdicts = h.run_together([signed] * 8)
    assert all("dkim=pass" in results(v) for v in verdicts)
    _same(verdicts[0], h.run(signed, remote=False))
    shares = [m.answered for m in h.remote.members]
    assert sum(shares) == 8 and all(shares), f"both processes checked some: {shares}"
    assert len(h.child_pids()) == 2


def test_a_pool_member_that_dies_leaves_the_other_checking(remote_harness, keys):
    h = remote_harness(members=2)
    first, second = h.remote.members
    os.kill(h.spawners[0]._children[0].pid, signal.SIGKILL)
    signed = keys.rsa.sign(message())
    verdicts = h.run_together([signed] * 4) + [h.run(signed) for _ in range(3)]
    assert all("dkim=pass" in results(v) for v in verdicts)  # never unchecked
    assert second.answered >= 3, "the live process took the checks"
    # The dead one is replaced in the background (remote.py), and checks again.
    assert h.runner.run(h.remote.wait_ready(30.0))
    assert first.in_flight == 0


def test_a_pool_member_without_a_process_is_started_in_the_background(dns_server, tmp_path, keys):
    h = RemoteHarness(dns_server.port, tmp_path, members=2, wait=False)
    try:
        idle = h.remote.members[1]
        idle.close()  # as if its process had never been started...
        spawner = h.spawners[1]
        h.remote.members = (
            h.remote.members[0],
            RemoteChecks(None, respawn=spawner.spawn, reap=spawner.close),
        )
        assert h.runner.run(h.remote.members[0].wait_ready(30.0))
        signed = keys.rsa.sign(message())
        assert "dkim=pass" in results(h.run(signed))  # ...the message starts it
        assert h.runner.run(h.remote.wait_ready(30.0)), "started by the pool"
        assert all(m.in_flight == 0 for m in h.remote.members)
    finally:
        h.close()
