"""SmtpAgent against FakePeer on loopback: candidate walk, per-recipient results, faults."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, Outcome
from pigeon.delivery.smtp import Candidate, ResolveError, SmtpAgent
from pigeon.proto.client import ClientConfig
from pigeon.proto.params import MailParams, RcptParams
from pigeon.testing.fakepeer import CLOSE, CLOSE_IN_DATA, HANG, FakePeer
from pigeon.testing.live import free_port
from pigeon.vocab import Nexthop

CONTENT = b"Subject: test\r\n\r\n.leading dot\r\nbody\r\n..two\r\n"


class FakeResolver:
    """Returns fixed candidates (or raises), and records the next hops asked for."""

    def __init__(self, *ports: int, error: ResolveError | None = None) -> None:
        self.cands = [Candidate(f"mx{i}.test", "127.0.0.1", p, 10 * i) for i, p in enumerate(ports)]
        self.error = error
        self.asked: list[Nexthop] = []

    async def candidates(self, nexthop: Nexthop) -> list[Candidate]:
        self.asked.append(nexthop)
        if self.error:
            raise self.error
        return list(self.cands)


def request(tmp_path: Path, *rcpts: str, content: bytes = CONTENT, **kw) -> DeliveryRequest:
    path = tmp_path / "msg.eml"
    path.write_bytes(content)
    rs = tuple(
        DeliveryRecipient(r, RcptParams(("SUCCESS", "FAILURE")))
        for r in (rcpts or ("bob@dst.test",))
    )
    fields = dict(
        queue_id="Q1",
        sender="alice@src.test",
        params=MailParams(envid="E1", ret="HDRS"),
        recipients=rs,
        content=path,
        size=len(content),
        eight_bit=any(b > 127 for b in content),
        smtputf8=False,
        nexthop=Nexthop("smtp", "dst.test"),
    )
    fields.update(kw)
    return DeliveryRequest(**fields)


FAST = ClientConfig(
    greeting_timeout=1,
    mail_timeout=1,
    rcpt_timeout=1,
    data_init_timeout=1,
    data_done_timeout=1,
    helo_timeout=1,
    connect_timeout=2,
    idle_timeout=0.5,
)


def run(coro):
    return asyncio.run(coro)


async def deliver(peer_ports, req, config=FAST, **kw):
    agent = SmtpAgent(config, FakeResolver(*peer_ports, **kw), own_hostname="pigeon.test")
    try:
        return await agent.deliver(req), agent
    finally:
        await agent.aclose()


def test_delivers_with_dsn_and_content_intact(tmp_path):
    async def main():
        async with FakePeer() as peer:
            res, agent = await deliver(
                [peer.port], request(tmp_path, "bob@dst.test", "carol@dst.test")
            )
            return peer, res

    peer, res = run(main())
    assert [r.outcome for r in res] == [Outcome.DELIVERED] * 2
    assert res[0].action == "delivered" and res[0].status == "2.0.0"
    assert res[0].remote_mta == f"mx0.test[127.0.0.1]:{peer.messages and peer.port}"
    assert res[0].diagnostic == "250 2.0.0 Ok: queued as FAKE"
    [m] = peer.messages
    assert m.content == CONTENT and m.recipients == ["bob@dst.test", "carol@dst.test"]
    assert "ENVID=E1" in m.mail_line and "RET=HDRS" in m.mail_line
    assert m.rcpt_lines[0].endswith("NOTIFY=SUCCESS,FAILURE")
    assert any(line.startswith("BDAT") for line in peer.transcript)


def test_without_dsn_success_is_relayed_and_data_is_used(tmp_path):
    async def main():
        async with FakePeer(extensions=("PIPELINING", "8BITMIME")) as peer:
            res, _ = await deliver([peer.port], request(tmp_path))
            return peer, res

    peer, res = run(main())
    assert res[0].action == "relayed" and res[0].outcome is Outcome.DELIVERED
    assert "DATA" in peer.transcript and "ENVID" not in peer.messages[0].mail_line
    assert peer.messages[0].content == CONTENT


def test_some_recipients_rejected(tmp_path):
    def rules(cmd, conn):
        if cmd.verb == "RCPT" and "bad" in cmd.arg:
            return "550 5.1.1 <bad@dst.test>: Recipient address rejected"
        if cmd.verb == "RCPT" and "full" in cmd.arg:
            return "452 4.2.2 mailbox full"
        return None

    async def main():
        async with FakePeer(rules) as peer:
            res, _ = await deliver(
                [peer.port], request(tmp_path, "ok@dst.test", "bad@dst.test", "full@dst.test")
            )
            return peer, res

    peer, res = run(main())
    assert [r.outcome for r in res] == [Outcome.DELIVERED, Outcome.BOUNCED, Outcome.DEFERRED]
    assert res[1].status == "5.1.1" and res[1].action == "failed"
    assert res[1].diagnostic == "550 5.1.1 <bad@dst.test>: Recipient address rejected"
    assert res[2].status == "4.2.2"
    assert peer.messages[0].recipients == ["ok@dst.test"]


def test_connection_refused_is_deferred_441(tmp_path):
    port = free_port()
    res, _ = run(deliver([port], request(tmp_path)))
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.4.1"
    assert res[0].diagnostic == f"connect to mx0.test[127.0.0.1]:{port}: Connection refused"


def test_next_mx_when_the_first_refuses(tmp_path):
    async def main():
        async with FakePeer() as peer:
            res, _ = await deliver([free_port(), peer.port], request(tmp_path))
            return peer, res

    peer, res = run(main())
    assert res[0].outcome is Outcome.DELIVERED and res[0].remote_mta.startswith("mx1.test")


def test_next_mx_after_4xx_mail_and_5xx_mail_bounces(tmp_path):
    async def main():
        async with (
            FakePeer(lambda c, _: "451 4.3.0 busy" if c.verb == "MAIL" else None) as p1,
            FakePeer() as p2,
        ):
            res, _ = await deliver([p1.port, p2.port], request(tmp_path))
        async with (
            FakePeer(lambda c, _: "553 5.7.1 sender refused" if c.verb == "MAIL" else None) as p3,
            FakePeer() as p4,
        ):
            res2, _ = await deliver([p3.port, p4.port], request(tmp_path))
            return res, res2, p4

    res, res2, p4 = run(main())
    assert res[0].outcome is Outcome.DELIVERED and res[0].remote_mta.startswith("mx1.test")
    assert res2[0].outcome is Outcome.BOUNCED and res2[0].status == "5.7.1"
    assert p4.connections == 0


def test_4xx_then_success_on_retry(tmp_path):
    rules = lambda cmd, conn: (
        "451 4.7.1 greylisted" if cmd.verb == "MAIL" and conn.peer.mail_count == 1 else None
    )

    async def main():
        async with FakePeer(rules) as peer:
            first, _ = await deliver([peer.port], request(tmp_path))
            second, _ = await deliver([peer.port], request(tmp_path))
            return first, second

    first, second = run(main())
    assert first[0].outcome is Outcome.DEFERRED and first[0].status == "4.7.1"
    assert first[0].diagnostic == "451 4.7.1 greylisted"
    assert second[0].outcome is Outcome.DELIVERED


def test_peer_closing_mid_data_defers(tmp_path):
    async def main():
        async with FakePeer(
            lambda c, _: CLOSE_IN_DATA if c.verb in ("DATA", "BDAT") else None,
            extensions=("PIPELINING",),
        ) as peer:
            res, _ = await deliver(
                [peer.port, peer.port], request(tmp_path, content=CONTENT * 5000)
            )
            return peer, res

    peer, res = run(main())
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.4.2"
    assert "lost connection" in res[0].diagnostic
    assert peer.connections == 1  # data stage: no second candidate (no duplicates)


def test_peer_that_stops_answering_times_out(tmp_path):
    async def main():
        async with FakePeer(lambda c, _: HANG if c.verb == "MAIL" else None) as peer:
            return (await deliver([peer.port], request(tmp_path)))[0]

    res = run(main())
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.4.2"
    assert "timed out while sending MAIL FROM" in res[0].diagnostic


def test_greeting_554_bounces_when_last_candidate(tmp_path):
    async def main():
        async with FakePeer(greeting="554 5.7.1 no service for you") as peer:
            return (await deliver([peer.port], request(tmp_path)))[0]

    res = run(main())
    assert res[0].outcome is Outcome.BOUNCED and res[0].status == "5.7.1"
    assert "554 5.7.1 no service for you" in res[0].diagnostic


def test_resolve_errors_apply_to_everyone(tmp_path):
    err = ResolveError("Host or domain name not found: dst.test", "5.1.2", permanent=True)
    res, _ = run(deliver([], request(tmp_path, "a@dst.test", "b@dst.test"), error=err))
    assert [(r.outcome, r.status) for r in res] == [(Outcome.BOUNCED, "5.1.2")] * 2
    err = ResolveError("SERVFAIL", "4.4.3", permanent=False)
    res, _ = run(deliver([], request(tmp_path), error=err))
    assert res[0].outcome is Outcome.DEFERRED and res[0].diagnostic == "SERVFAIL"


def test_groups_of_max_recipients_share_a_connection(tmp_path):
    rcpts = [f"r{i}@dst.test" for i in range(7)]

    async def main():
        async with FakePeer() as peer:
            res, _ = await deliver(
                [peer.port],
                request(tmp_path, *rcpts),
                config=ClientConfig(max_recipients_per_transaction=3),
            )
            return peer, res

    peer, res = run(main())
    assert all(r.outcome is Outcome.DELIVERED for r in res)
    assert [len(m.recipients) for m in peer.messages] == [3, 3, 1]
    assert peer.connections == 1


def test_connection_reused_with_rset_then_idle_quit(tmp_path):
    async def main():
        async with FakePeer() as peer:
            agent = SmtpAgent(FAST, FakeResolver(peer.port), own_hostname="pigeon.test")
            await agent.deliver(request(tmp_path))
            await agent.deliver(request(tmp_path))
            stats = agent.statistics()
            await asyncio.sleep(0.8)  # idle_timeout 0.5: QUIT
            idle_after = agent.statistics()["idle"]
            await agent.aclose()
            return peer, stats, idle_after

    peer, stats, idle_after = run(main())
    assert peer.connections == 1 and stats["reused"] == 1 and idle_after == 0
    assert peer.transcript.count("RSET") == 1 and peer.transcript[-1] == "QUIT"
    assert len(peer.messages) == 2


def test_closed_cached_connection_is_replaced(tmp_path):
    async def main():
        async with FakePeer(lambda c, _: CLOSE if c.verb == "RSET" else None) as peer:
            agent = SmtpAgent(
                ClientConfig(idle_timeout=5), FakeResolver(peer.port), own_hostname="pigeon.test"
            )
            await agent.deliver(request(tmp_path))
            res = await agent.deliver(request(tmp_path))
            await agent.aclose()
            return peer, res

    peer, res = run(main())
    assert res[0].outcome is Outcome.DELIVERED and peer.connections == 2


def test_size_smtputf8_and_loop(tmp_path):
    async def main():
        async with FakePeer(extensions=("SIZE 10", "8BITMIME")) as small:
            big = (await deliver([small.port], request(tmp_path)))[0]
            utf8 = (
                await deliver(
                    [small.port], request(tmp_path, content=b"x\r\n", size=3, smtputf8=True)
                )
            )[0]
        async with FakePeer(name="pigeon.test") as me:
            loop = (await deliver([me.port], request(tmp_path)))[0]
        return big, utf8, loop

    big, utf8, loop = run(main())
    assert big[0].outcome is Outcome.BOUNCED and big[0].status == "5.3.4"
    assert "message too big for remote" in big[0].diagnostic
    assert utf8[0].outcome is Outcome.BOUNCED and utf8[0].status == "5.6.7"
    assert loop[0].outcome is Outcome.BOUNCED and loop[0].status == "5.4.6"
    assert "loops back to myself" in loop[0].diagnostic


@pytest.mark.parametrize(
    "nexthop, loop",
    [
        (Nexthop("smtp", "dst.test"), True),  # MX lookup
        (Nexthop("smtp", "dst.test", "relay.test", 2525, True), True),  # smtp:relay.test (MX)
        (Nexthop("smtp", "[127.0.0.1]", "127.0.0.1", None, False), True),  # address literal
        (Nexthop("smtp", "dst.test", "127.0.0.1", 10025, False), False),  # smtp:[127.0.0.1]:10025
        (Nexthop("smtp", "dst.test", "filter.test", 10025, False), False),  # smtp:[filter.test]
        (Nexthop("smtp", "[192.0.2.1]", "relay.test", 587, False), False),  # literal via relay_host
    ],
)
def test_greeting_with_our_name_is_a_loop_only_where_routing_says(tmp_path, nexthop, loop):
    """A content filter on loopback, reached by an explicit [host] route, may
    share our host name (docs/config.md recommends smtp:[host] for it)."""

    async def main():
        async with FakePeer(name="pigeon.test") as me:
            return (await deliver([me.port], request(tmp_path, nexthop=nexthop)))[0]

    [res] = run(main())
    if loop:
        assert (res.outcome, res.status) == (Outcome.BOUNCED, "5.4.6")
    else:
        assert res.outcome is Outcome.DELIVERED, res


def test_8bit_downgraded_for_peer_without_8bitmime(tmp_path):
    content = b"Subject: caf\xc3\xa9?\r\nMIME-Version: 1.0\r\n"  # 8-bit header: impossible
    body = (
        b"Subject: hello\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
    )

    async def main():
        async with FakePeer(extensions=("PIPELINING",)) as peer:
            ok = (await deliver([peer.port], request(tmp_path, content=body)))[0]
            bad = (await deliver([peer.port], request(tmp_path, content=content + b"\r\nx\r\n")))[0]
            return peer, ok, bad

    peer, ok, bad = run(main())
    assert ok[0].outcome is Outcome.DELIVERED
    sent = peer.messages[0].content
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in sent and b"caf=C3=A9" in sent
    assert "BODY=8BITMIME" not in peer.messages[0].mail_line
    assert all(b < 128 for b in sent)
    assert bad[0].outcome is Outcome.BOUNCED and bad[0].status == "5.6.3"


def test_smtp_agent_passes_the_agent_conformance_suite():
    from pigeon.testing.conformance import check_delivery_agent

    port = free_port()  # nothing listens: every attempt is deferred
    check_delivery_agent(
        lambda: SmtpAgent(FAST, FakeResolver(port), own_hostname="p.test"),
        nexthop=Nexthop("smtp", "dst.test"),
    )


def test_relay_login_belongs_to_the_configured_host_and_port(tmp_path):
    from pigeon.config import load_config
    from pigeon.delivery.wiring import build_agents
    from pigeon.testing.fakedns import FakeResolver as FakeDns

    password = tmp_path / "pw"
    password.write_text("secret\n")
    config = load_config(
        overrides={
            "delivery": {
                "relay_host": "[relay.example]:587",
                "relay_user": "me",
                "relay_password_file": str(password),
            },
            "transports": {"other.test": "smtp:[relay.example]:2525"},
        }
    )
    agent = build_agents(config, FakeDns())["smtp"]
    login = ("me", "secret")
    assert agent._auth_for(Nexthop("smtp", "any.test", "relay.example", 587, False)) == login
    assert agent._auth_for(Nexthop("smtp", "any.test", "RELAY.example", 587, False)) == login
    for other in (
        Nexthop("smtp", "other.test", "relay.example", 2525, False),  # same host
        Nexthop("smtp", "x.test", "relay.example", None, False),  # port 25
        Nexthop("smtp", "x.test", "relay.example", 587, True),  # its MX hosts
        Nexthop("lmtp", "x.test", "relay.example", 587, False),
        Nexthop("smtp", "relay.example"),
    ):
        assert agent._auth_for(other) is None, other
    config = load_config(
        overrides={
            "delivery": {
                "relay_host": "[relay.example]",
                "relay_user": "me",
                "relay_password_file": str(password),
            }
        }
    )
    agent = build_agents(config, FakeDns())["smtp"]
    assert agent._auth_for(Nexthop("smtp", "any.test", "relay.example", None, False)) == login
    assert agent._auth_for(Nexthop("smtp", "any.test", "relay.example", 25, False)) == login
