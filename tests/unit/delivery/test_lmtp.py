"""LmtpAgent against FakePeer in LMTP mode, over TCP and over a Unix socket."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, Outcome
from pigeon.delivery.lmtp import LmtpAgent
from pigeon.proto.client import ClientConfig
from pigeon.proto.params import MailParams
from pigeon.testing.fakepeer import FakePeer
from pigeon.testing.live import free_port
from pigeon.vocab import Nexthop

CONTENT = b"Subject: lmtp\r\n\r\n.dot\r\nbody\r\n"
LMTP_EXT = ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME")


def request(tmp_path: Path, host: str, port: int | None, *rcpts: str) -> DeliveryRequest:
    path = tmp_path / "m.eml"
    path.write_bytes(CONTENT)
    return DeliveryRequest(
        "Q",
        "s@src.test",
        MailParams(),
        tuple(DeliveryRecipient(r) for r in rcpts),
        path,
        len(CONTENT),
        False,
        False,
        Nexthop("lmtp", "local", host=host, port=port, mx=False),
    )


def quota_rule(cmd, conn):
    if cmd.verb == "DATA-END" and cmd.arg.startswith("full"):
        return f"452 4.2.2 <{cmd.arg}> Mailbox is full"
    if cmd.verb == "DATA-END" and cmd.arg.startswith("gone"):
        return f"550 5.1.1 <{cmd.arg}> User doesn't exist"
    return None


def check(res, peer):
    assert [r.outcome for r in res] == [Outcome.DELIVERED, Outcome.DEFERRED, Outcome.BOUNCED]
    assert res[1].status == "4.2.2" and res[2].diagnostic.startswith("550 5.1.1 <gone@x>")
    assert res[0].action == "delivered"
    assert peer.messages[0].content == CONTENT
    assert peer.transcript[0].startswith("LHLO ") and "QUIT" in peer.transcript


def test_lmtp_over_tcp_per_recipient_replies(tmp_path):
    async def main():
        async with FakePeer(quota_rule, lmtp=True, extensions=LMTP_EXT) as peer:
            agent = LmtpAgent(ClientConfig(), own_hostname="pigeon.test")
            res = await agent.deliver(
                request(tmp_path, "127.0.0.1", peer.port, "ok@x", "full@x", "gone@x")
            )
            return res, peer

    res, peer = asyncio.run(main())
    check(res, peer)
    assert res[0].remote_mta.endswith(f"[127.0.0.1]:{peer.port}")


def test_lmtp_over_unix_socket(tmp_path):
    sock = Path(tempfile.mkdtemp(prefix="pigeon-lmtp-")) / "lmtp.sock"

    async def main():
        async with FakePeer(
            quota_rule, lmtp=True, extensions=LMTP_EXT, unix_path=str(sock)
        ) as peer:
            agent = LmtpAgent(ClientConfig(), own_hostname="pigeon.test")
            res = await agent.deliver(
                request(tmp_path, str(sock), None, "ok@x", "full@x", "gone@x")
            )
            return res, peer

    res, peer = asyncio.run(main())
    check(res, peer)
    assert res[0].remote_mta == str(sock)


def test_lmtp_connect_failure_defers_everyone(tmp_path):
    port = free_port()
    res = asyncio.run(
        LmtpAgent(ClientConfig(), own_hostname="p").deliver(
            request(tmp_path, "127.0.0.1", port, "a@x", "b@x")
        )
    )
    assert [(r.outcome, r.status) for r in res] == [(Outcome.DEFERRED, "4.4.1")] * 2
    res = asyncio.run(
        LmtpAgent(ClientConfig(), own_hostname="p").deliver(
            request(tmp_path, str(tmp_path / "no.sock"), None, "a@x")
        )
    )
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.4.1"


def test_lmtp_refusing_greeting_is_deferred_not_bounced(tmp_path):
    async def main():
        async with FakePeer(lmtp=True, greeting="554 5.3.0 not today") as peer:
            return await LmtpAgent(ClientConfig(), own_hostname="p").deliver(
                request(tmp_path, "127.0.0.1", peer.port, "a@x")
            )

    res = asyncio.run(main())
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.3.0"


def test_lmtp_agent_passes_the_agent_conformance_suite():
    from pigeon.testing.conformance import check_delivery_agent

    port = free_port()
    check_delivery_agent(
        lambda: LmtpAgent(ClientConfig(), own_hostname="p.test"),
        nexthop=Nexthop("lmtp", "local", host="127.0.0.1", port=port, mx=False),
    )
