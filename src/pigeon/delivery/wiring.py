"""Build the delivery agents from a `Config`.

Contract:
  * `client_config(config)` maps the `[delivery]` settings onto the SMTP
    client's `ClientConfig` (one command timeout for every reply that RFC 5321
    §4.5.3.2 gives five minutes; the data timeouts as configured).
  * `build_agents(config, dns)` returns the agents by transport name ("smtp",
    "lmtp", "discard"); the Maildir agent ("local") is built with the queue
    manager, which shares its storage health (pigeon/qmgr/wiring.py).
    The SMTP agent resolves next hops through `MxResolver` over the injected
    `pigeon.dns.Resolver` `dns`; it knows our own names and addresses for MX
    loop detection (RFC 5321 §5.1). Its outbound TLS policies
    (`delivery.tlspolicy`, `[tls_policy]`) use the same resolver and cache
    MTA-STS policies in `<data_dir>/mta-sts/`; `sink` takes one `TlsRecord`
    per delivery attempt (default: `NullSink`, no reports).
  * Called only from the composition root (`pigeon.app`), which also builds
    the queue manager: delivery never imports the queue manager (it sits
    above delivery).
  * With `[arc] enabled` the "smtp" agent is a `SealingAgent` in front of
    the SMTP agent (delivery/sealing.py): forwarded copies are ARC-sealed.
"""

from __future__ import annotations

from collections.abc import Mapping

from pigeon.config.schema import Config
from pigeon.delivery.api import DeliveryAgent
from pigeon.delivery.discard import DiscardAgent
from pigeon.delivery.lmtp import LmtpAgent
from pigeon.delivery.sealing import SealingAgent
from pigeon.delivery.smtp import LoginKey, SmtpAgent, login_key
from pigeon.delivery.tlspolicy.policy import TlsPolicies
from pigeon.dns.api import Resolver
from pigeon.forwarding.arc import ArcSealer
from pigeon.proto.client import ClientConfig
from pigeon.reports.records import ReportSink
from pigeon.routing.mx import MxResolver, own_identity


def client_config(config: Config) -> ClientConfig:
    d = config.delivery
    per_reply = d.command_timeout
    return ClientConfig(
        helo_name=d.helo_name or config.hostname,
        connect_timeout=d.connect_timeout,
        greeting_timeout=per_reply,
        helo_timeout=per_reply,
        starttls_timeout=per_reply,
        mail_timeout=per_reply,
        rcpt_timeout=per_reply,
        data_init_timeout=min(per_reply, 120.0) if per_reply >= 120.0 else per_reply,
        data_block_timeout=d.data_block_timeout,
        data_done_timeout=d.data_done_timeout,
        tls=d.tls,
        tls_ca_file=str(d.tls_ca_file) if d.tls_ca_file else None,
        max_recipients_per_transaction=d.destination_recipients,
        smtp_port=d.remote_port,
    )


def relay_credentials(config: Config) -> dict[LoginKey, tuple[str, str]]:
    """{login_key of relay_host: (user, password)} when delivery.relay_user is set:
    the login belongs to that host AND port (delivery.smtp.login_key), never
    to another service or route on the same host.

    The password lives in its own file (delivery.relay_password_file, checked
    to exist at load time) so the configuration can be world-readable.
    """
    d = config.delivery
    relay = d.relay_host
    if not d.relay_user or relay is None or not relay.host or d.relay_password_file is None:
        return {}  # the loader refuses relay_user without relay_host and a password file
    password = d.relay_password_file.read_text(encoding="utf-8").strip("\r\n")
    return {
        login_key(relay.host, relay.port, relay.mx, default_port=d.remote_port): (
            d.relay_user,
            password,
        )
    }


def build_agents(
    config: Config, dns: Resolver, sink: ReportSink | None = None
) -> dict[str, DeliveryAgent]:
    names, addresses = own_identity(config)
    resolver = MxResolver(
        dns,
        remote_port=config.delivery.remote_port,
        own_names=names,
        own_addresses=addresses,
    )
    cc = client_config(config)
    policies = TlsPolicies(
        dns,
        config.tls_policy,
        base_mode=config.delivery.tls,
        cache_dir=config.data_dir / "mta-sts",
    )
    smtp: DeliveryAgent = SmtpAgent(
        cc,
        resolver,
        own_hostname=config.hostname,
        credentials=relay_credentials(config),
        tls_policies=policies,
        sink=sink,
    )
    sealer = ArcSealer.from_config(config)
    if sealer is not None:
        smtp = SealingAgent(smtp, sealer, dns)
    return {
        "smtp": smtp,
        "lmtp": LmtpAgent(cc, own_hostname=config.hostname),
        "discard": DiscardAgent(),
    }


async def close_agents(agents: Mapping[str, DeliveryAgent]) -> None:
    """Close idle outbound connections (QUIT) at shutdown."""
    for agent in agents.values():
        aclose = getattr(agent, "aclose", None)
        if aclose is not None:
            await aclose()
