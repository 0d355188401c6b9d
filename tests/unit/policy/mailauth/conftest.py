"""The inbound checks over a real DNS server on loopback (pigeon.testing.dnsserver),
our resolver (StubResolver behind the TTL cache) and real spooled messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pigeon.config import load_config
from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.policy.api import SessionFacts
from pigeon.policy.mailauth import build_mail_auth
from pigeon.policy.message import SpoolMessage
from pigeon.policy.relay import RelayNetworks
from pigeon.proto.params import RcptParams
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.mailauthkit import DkimKey, txt
from pigeon.vocab.address import Address

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "mailauth"

CLIENT = "192.0.2.10"  # example.org's SPF permits it
LIST_SERVER = "192.0.2.20"  # lists.example's SPF permits it
FORGER = "198.51.100.66"  # nobody's SPF permits it
AUTHSERV = "mx.example.test"

# RFC 6376 Appendix C and RFC 8463 Appendix A.2: the keys of the RFCs' signed examples.
RFC6376_KEY = (
    "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7"
    "/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfV"
    "jH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"
)
RFC8463_ED25519 = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_RSA = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qh"
    "dR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hst"
    "T5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)


class Keys:
    def __init__(self) -> None:
        self.rsa = DkimKey.rsa("s2048", "example.org")
        self.ed = DkimKey.ed25519("ed", "example.org")
        self.other = DkimKey.rsa("k", "other.example")
        self.lists = DkimKey.rsa("arc", "lists.example")
        self.half = DkimKey.rsa("k1", "half.example")
        self.strict_mail = DkimKey.ed25519("k", "mail.strict.example")


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


def zones(keys: Keys) -> dict[str, str]:
    spf_client = txt(f"v=spf1 ip4:{CLIENT} -all")
    chain = "".join(
        f"l{i} TXT {txt(f'v=spf1 include:l{i + 1}.loop.example -all')}\n" for i in range(12)
    )
    return {
        "example.org": (
            f"@ TXT {spf_client}\n"
            f"_dmarc TXT {txt('v=DMARC1; p=reject; rua=mailto:dmarc@example.org')}\n"
            f"sub TXT {spf_client}\n"
            + keys.rsa.zone_line("example.org")
            + keys.ed.zone_line("example.org")
        ),
        "other.example": f"@ TXT {txt('v=spf1 -all')}\n" + keys.other.zone_line("other.example"),
        "quarantine.example": (f"@ TXT {spf_client}\n_dmarc TXT {txt('v=DMARC1; p=quarantine')}\n"),
        "sampled.example": f"_dmarc TXT {txt('v=DMARC1; p=reject; pct=0')}\n",
        "none.example": f"_dmarc TXT {txt('v=DMARC1; p=none')}\n",
        "strict.example": (
            f"_dmarc TXT {txt('v=DMARC1; p=reject; adkim=s; aspf=s')}\n"
            + keys.strict_mail.zone_line("strict.example")
        ),
        "lists.example": (
            f"@ TXT {txt(f'v=spf1 ip4:{LIST_SERVER} -all')}\n"
            + keys.lists.zone_line("lists.example")
        ),
        "loop.example": (
            f"@ TXT {txt('v=spf1 include:l0.loop.example -all')}\n{chain}"
            f"_dmarc TXT {txt('v=DMARC1; p=reject')}\n"
        ),
        "half.example": (
            f"@ TXT {txt('v=spf1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}\n"
            + keys.half.zone_line("half.example")
        ),
        "slow.example": '@ TXT "v=spf1 -all"\n',
        "example.com": f"brisbane._domainkey TXT {txt(RFC6376_KEY)}\n",
        "football.example.com": (
            f"brisbane._domainkey TXT {txt(RFC8463_ED25519)}\ntest._domainkey TXT {txt(RFC8463_RSA)}\n"
        ),
    }


@pytest.fixture
def dns_server(keys):
    # half.example's key and all of slow.example never answer: DNS that stops mid-check
    with DnsServer(
        zones=zones(keys), timeout={"k1._domainkey.half.example", "slow.example"}
    ) as server:
        yield server


class Sink:
    """A ReportSink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list = []

    def dmarc(self, record) -> None:
        self.records.append(record)

    def tls(self, record) -> None:
        raise AssertionError("the inbound checks make no TLS records")


class Harness:
    def __init__(
        self, dns_port: int, tmp_path: Path, mail_auth: dict, relay=(), reports: bool = True
    ) -> None:
        self.config = load_config(
            overrides={
                "hostname": AUTHSERV,
                "relay_networks": list(relay),
                "mail_auth": mail_auth,
                # The checks make DMARC report records only for a sink that keeps them.
                "reports": {"dmarc": reports},
            }
        )
        self.resolver = CachingResolver(StubResolver([("127.0.0.1", dns_port)], timeout=1.0))
        self.sink = Sink()
        self.check = build_mail_auth(
            self.config,
            self.resolver,
            RelayNetworks(self.config.relay_networks),
            self.sink,
        )
        self.store = QueueStore(tmp_path / "queue", fsync=False)
        self.store.open()

    def run(
        self,
        content: bytes,
        *,
        ip: str = CLIENT,
        sender: str | None = "alice@example.org",
        helo: str = "mail.example.org",
        to: str = "bob@example.test",
        user: str | None = None,
    ):
        spool = self.store.new_spool(Envelope("", sender or "", [Recipient(to)]))
        # As net/intake.py writes it: our Received: first, then the client's message.
        spool.write(
            b"Received: from client (client ["
            + ip.encode()
            + b"])\r\n\tby "
            + AUTHSERV.encode()
            + b"; Sun, 6 Dec 2026 07:00:00 +0000\r\n"
        )
        spool.write(content)
        message = SpoolMessage(spool, header_limit=1 << 20, eight_bit=False)
        local, _, domain = (sender or "").partition("@")
        facts = SessionFacts(
            ip,
            helo=helo,
            sender=Address(local, domain) if sender else None,
            recipients=[(Address(*to.split("@")), RcptParams())],
            user=user,
        )
        try:
            return asyncio.run(self.check.end_of_data(facts, message))
        finally:
            spool.discard()

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(dns_server, tmp_path):
    made: list[Harness] = []

    def make(relay=(), reports=True, **mail_auth) -> Harness:
        h = Harness(dns_server.port, tmp_path / f"h{len(made)}", mail_auth, relay, reports)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def results(verdict) -> str:
    """The value of our Authentication-Results field, unfolded."""
    fields = [h for h in verdict.headers if h.name == "Authentication-Results"]
    assert len(fields) == 1, verdict
    return fields[0].value.replace("\r\n\t", " ")
