"""The bounded stop (issue 19 item 1; docs/admin.md "Stop"), with real parts.

A next hop on loopback that accepts TCP and never greets (faultfs.Blackhole),
a DNS server on loopback that never answers (pigeon.testing.dnsserver), a
next hop that takes the whole message and never answers the final dot
(smtp-sink -W .:600), clients holding sessions in DATA, a disk write that
stalls (the faultfs LD_PRELOAD shim, "BLOCK fsync"). SIGTERM (or SIGINT,
or `pigeon stop`) must end pigeon within `timeouts.shutdown_grace` + 5 s
whatever they do, measured from the signal to the process's exit (a bound,
not a speed test), and the next start must deliver every acknowledged
message.
"""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultfs import Blackhole, shimmed_pigeon

from pigeon.cli.stop import running
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import (
    PigeonProcess,
    free_port,
    maildir_messages,
    recv_reply,
    require_tool,
    wait_for,
)
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

GRACE = 3.0  # timeouts.shutdown_grace in these tests
BOUND = GRACE + 5.0  # the promise: gone within grace + 5 s
NEXT_HOP = "127.0.0.2"  # remote next hops (127.0.0.1 is pigeon itself: a loop)


def hold_in_data(port: int, count: int, rcpt: str = "held@localhost") -> list[socket.socket]:
    """`count` sessions that sent half a message and stay in DATA."""
    held = []
    for n in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert recv_reply(s).startswith(b"220")
        s.sendall(b"EHLO held.test\r\n")
        assert recv_reply(s).startswith(b"250")
        s.sendall(f"MAIL FROM:<held{n}@client.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        replies = b""
        while b"354" not in replies:  # pipelined: up to three replies
            chunk = recv_reply(s)
            assert chunk, replies
            replies += chunk
        s.sendall(f"Subject: held {n}\r\n\r\nthe first half of message {n}\r\n".encode())
        held.append(s)
    return held


def rest_of_session(s: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server still sends on `s` until it closes (bounded)."""
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def send(port: int, rcpt: str, token: str) -> str:
    """Send one message; its queue id from the 250 (acknowledged)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("sender@client.test")
        s.rcpt(rcpt)
        code, text = s.data(f"Subject: {token}\r\nX-Token: {token}\r\n\r\nbody {token}\r\n")
    assert code == 250, (code, text)
    return re.search(rb"queued as (\S+)", text).group(1).decode()


def stop_time(server: PigeonProcess, sig: int = signal.SIGTERM, bound: float = BOUND) -> float:
    """Send `sig` and measure how long the process takes to be gone; it must exit 0."""
    started = time.monotonic()
    server.proc.send_signal(sig)
    try:
        status = server.proc.wait(bound + 10)
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail(
            f"pigeon still running {bound + 10:g}s after the signal:\n{server.log()[-4000:]}"
        )
    elapsed = time.monotonic() - started
    print(f"stopped in {elapsed:.2f}s (bound {bound:g}s)")
    assert status == 0, server.log()[-4000:]
    return elapsed


def tokens_at(sink: SmtpSink) -> set[str]:
    return {
        m.group(1).decode() for raw in sink.messages() for m in re.finditer(rb"X-Token: (\S+)", raw)
    }


def test_sigterm_with_hung_deliveries_a_hung_lookup_and_50_sessions_ends_within_grace_plus_5(
    pigeon_factory,
):
    """The issue's "done when": with 20 deliveries hung on a silent next hop, a DNS
    look-up hung and 50 inbound sessions open, SIGTERM ends pigeon within grace + 5 s,
    and after the next start every acknowledged message is delivered."""
    hop_port = free_port()
    blackhole = Blackhole(hop_port, host=NEXT_HOP)
    silent_dns = DnsServer(timeout={"silent.test"}).__enter__()
    dns_port = silent_dns.port
    try:
        server = pigeon_factory(
            f"""relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[limits]
connections_per_ip = 0
[timeouts]
shutdown_grace = {GRACE}
[delivery]
dns_servers = ["127.0.0.1:{dns_port}"]
dns_timeout = 600
remote_port = {hop_port}
[transports]
"hung.test" = "smtp:[{NEXT_HOP}]:{hop_port}"
"""
        )
        acknowledged = {
            send(server.port, f"r{n}@hung.test", f"hung{n}"): f"hung{n}" for n in range(20)
        }
        acknowledged[send(server.port, "r@silent.test", "lookup")] = "lookup"
        assert wait_for(lambda: len(blackhole.accepted) >= 20, timeout=30), (
            len(blackhole.accepted),
            server.log()[-3000:],
        )
        assert wait_for(
            lambda: any(q[0].startswith("silent.test") for q in silent_dns.queries), timeout=30
        ), silent_dns.queries
        held = hold_in_data(server.port, 50)

        elapsed = stop_time(server)

        assert elapsed <= BOUND, f"took {elapsed:.2f}s, more than grace + 5 s"
        for s in held:  # left at the deadline: told so, and closed
            assert b"421 4.3.2" in rest_of_session(s)
        log = server.log()
        for queue_id in acknowledged:
            assert re.search(rf"{queue_id}: recipients=\S+, .*status=abandoned", log), queue_id
        assert "Traceback" not in log
    finally:
        blackhole.close()
        silent_dns.close()

    # The next start: the next hop answers now and so does the DNS.
    zone = f"@ MX 10 mx\nmx A {NEXT_HOP}\n"
    with SmtpSink(NEXT_HOP, hop_port) as sink, DnsServer({"silent.test": zone}, port=dns_port):
        server.start()
        wanted = set(acknowledged.values())
        assert wait_for(lambda: wanted <= tokens_at(sink), timeout=60), (
            wanted - tokens_at(sink),
            server.log()[-4000:],
        )
        assert stop_time(server) <= BOUND


def test_a_second_signal_ends_the_stop_at_once(pigeon_factory):
    server = pigeon_factory('[domains."localhost"]\n[timeouts]\nshutdown_grace = 120\n')
    held = hold_in_data(server.port, 1)
    server.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "draining: 1 session(s)" in server.log(), timeout=10)
    # The grace (120 s) is far away: only the second signal can end it this soon.
    elapsed = stop_time(server, signal.SIGINT, bound=5.0)
    assert elapsed <= 5.0
    assert "second SIGINT during the stop: leaving now" in server.log()
    held[0].close()


def test_pigeon_stop_stops_the_server_and_prints_one_line(pigeon_factory):
    server = pigeon_factory(f'[domains."localhost"]\n[timeouts]\nshutdown_grace = {GRACE}\n')
    held = hold_in_data(server.port, 1)  # so that there is something to wait for
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "stop", "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=BOUND + 20,
    )
    assert out.returncode == 0, out
    assert out.stdout.splitlines() == [f"pigeon stopped (pid {server.proc.pid})"], out
    assert out.stderr == ""
    assert server.proc.wait(5) == 0  # already gone when `pigeon stop` returned
    assert b"421 4.3.2" in rest_of_session(held[0])
    # Not running: said in one line, status 69.
    again = subprocess.run(
        [sys.executable, "-m", "pigeon", "stop", "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 69, again
    assert again.stdout == "" and len(again.stderr.splitlines()) == 1, again


def test_sessions_finish_their_transaction_and_those_left_at_the_end_of_the_grace_get_421_4_3_2(
    pigeon_factory,
):
    server = pigeon_factory('[domains."localhost"]\n[timeouts]\nshutdown_grace = 5\n')
    in_data = hold_in_data(server.port, 2)
    between = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    assert recv_reply(between).startswith(b"220")
    between.sendall(b"EHLO between.test\r\n")
    assert recv_reply(between).startswith(b"250")
    server.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "draining: 3 session(s)" in server.log(), timeout=10)
    with pytest.raises(OSError):  # the listener closed at once
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    # A session between transactions sees nothing of the stop: it makes one
    # more, then is told (421 4.3.2) and closed.
    between.sendall(
        b"MAIL FROM:<b@client.test>\r\nRCPT TO:<held@localhost>\r\nDATA\r\n"
        b"Subject: between\r\n\r\nsent after the signal\r\n.\r\n"
    )
    after = rest_of_session(between)
    assert b"250 2.0.0 Ok: queued as" in after and after.endswith(b"\r\n"), after
    assert after.split(b"\r\n")[-2].startswith(b"421 4.3.2 "), after
    # One in DATA finishes its message the same way...
    in_data[0].sendall(b"the second half\r\n.\r\n")
    finished = rest_of_session(in_data[0])
    assert b"250 2.0.0 Ok: queued as" in finished and b"421 4.3.2" in finished, finished
    # ... and one still in DATA when the grace is over gets 421 4.3.2, then the close.
    cut = rest_of_session(in_data[1], timeout=20)
    assert cut.startswith(b"421 4.3.2 ") and cut.endswith(b"\r\n"), cut
    assert server.proc.wait(20) == 0
    server.start()
    assert wait_for(lambda: len(maildir_messages(server.data_dir, "held@localhost")) == 2)


def test_the_abandoned_attempts_are_logged_with_queue_id_recipients_and_next_hop(
    pigeon_factory,
):
    silent_port, dot_port = free_port(), free_port()
    blackhole = Blackhole(silent_port, host=NEXT_HOP)
    # A next hop that takes the whole message and never answers the final dot.
    with SmtpSink("127.0.0.3", dot_port, extra_args=("-W", ".:600")) as sink:
        try:
            server = pigeon_factory(
                f"""relay_networks = ["127.0.0.0/8"]
[timeouts]
shutdown_grace = 1
[transports]
"silent.test" = "smtp:[{NEXT_HOP}]:{silent_port}"
"dot.test" = "smtp:[127.0.0.3]:{dot_port}"
"""
            )
            greeting = send(server.port, "a@silent.test", "greeting")
            dot = send(server.port, "b@dot.test", "dot")
            assert wait_for(lambda: blackhole.accepted, timeout=30)
            # smtp-sink dumps the message as it arrives: the whole of it is there.
            assert wait_for(lambda: "dot" in tokens_at(sink), timeout=30)
            stop_time(server)
        finally:
            blackhole.close()
    log = server.log()
    hung = [line for line in log.splitlines() if f"{greeting}: " in line and "abandoned" in line]
    assert len(hung) == 1, log[-3000:]
    assert f"recipients=a@silent.test, relay=smtp:[{NEXT_HOP}]:{silent_port}" in hung[0]
    assert "tried again after the next start" in hung[0] and "twice" not in hung[0]
    twice = [line for line in log.splitlines() if f"{dot}: " in line and "abandoned" in line]
    assert len(twice) == 1, log[-3000:]
    assert "recipients=b@dot.test, relay=smtp:[127.0.0.3]:" in twice[0]
    assert "may be delivered twice" in twice[0]


def test_worker_mode_obeys_the_same_bound(pigeon_factory):
    hop_port = free_port()
    blackhole = Blackhole(hop_port, host=NEXT_HOP)
    try:
        server = pigeon_factory(
            f"""workers = 2
relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[limits]
connections_per_ip = 0
[timeouts]
shutdown_grace = {GRACE}
[transports]
"hung.test" = "smtp:[{NEXT_HOP}]:{hop_port}"
"""
        )
        workers = [int(p) for p in re.findall(r"worker process\(es\) started: (\d+)", server.log())]
        assert len(workers) == 1, server.log()
        for n in range(5):
            send(server.port, f"r{n}@hung.test", f"w{n}")
        assert wait_for(lambda: len(blackhole.accepted) >= 5, timeout=30)
        held = hold_in_data(server.port, 20)  # the kernel spreads them over both processes
        assert wait_for(lambda: _both_processes_hold_sessions(server, workers[0]), timeout=10)

        assert stop_time(server) <= BOUND
        for pid in workers:
            assert wait_for(lambda: not running(pid), timeout=5), f"worker {pid} outlived the stop"
        for s in held:
            assert b"421 4.3.2" in rest_of_session(s)
    finally:
        blackhole.close()


def _both_processes_hold_sessions(server: PigeonProcess, worker: int) -> bool:
    log = server.log()
    pids = set(re.findall(r"pigeon\[(\d+)\] INFO pigeon\.smtpd: connect from", log))
    return {str(server.proc.pid), str(worker)} <= pids


@pytest.mark.parametrize("local_at_accept", ["true", "false"])
def test_a_stalled_disk_write_does_not_hold_the_stop(tmp_path, local_at_accept):
    """A commit whose fsync never returns (the faultfs shim, "BLOCK fsync" on the
    whole data directory: the Maildir copy written at the accept, `[queue]
    local_at_accept`, or the queue commit): the session gets 421 4.3.2 at the end
    of the grace, the thread stays stuck, and the hard deadline (grace + 4 s) ends
    the process; the next start recovers."""
    require_tool("gcc")
    server, control = shimmed_pigeon(
        tmp_path,
        f'[domains."localhost"]\n[timeouts]\nshutdown_grace = {GRACE}\n'
        f"[queue]\nlocal_at_accept = {local_at_accept}\n",
        "",
    )
    server.start()
    try:
        send(server.port, "before@localhost", "before")
        assert wait_for(lambda: maildir_messages(server.data_dir, "before@localhost"))
        control.write_text("BLOCK fsync")
        stalled = hold_in_data(server.port, 1)[0]
        stalled.sendall(b"the rest\r\n.\r\n")  # its commit's fsync never returns
        assert wait_for(lambda: Path(f"{control}.blocked").exists(), timeout=10)

        elapsed = stop_time(server)

        assert elapsed <= BOUND, f"took {elapsed:.2f}s, more than grace + 5 s"
        assert rest_of_session(stalled).startswith(b"421 4.3.2"), "acknowledged, or no answer"
        assert "leaving now" in server.log()
        control.unlink()
        server.start()  # the queue opens and recovers; mail flows again
        send(server.port, "after@localhost", "after")
        assert wait_for(lambda: maildir_messages(server.data_dir, "after@localhost"))
        assert len(maildir_messages(server.data_dir, "before@localhost")) == 1
    finally:
        control.unlink(missing_ok=True)
        server.stop()
