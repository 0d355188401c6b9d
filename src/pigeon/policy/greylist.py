"""Greylisting ([greylist]): a first delivery attempt is asked to come back later.

RFC 6647 describes the technique: a real MTA retries a temporary failure
(RFC 5321 §4.5.4.1), much bulk-sending software does not.

Contract:
  * `Greylisting` is an rcpt check (after relay control and the local
    recipient check: an unknown recipient is refused, never greylisted).
    The triplet is (client network: /24 or /64, the envelope sender
    lowercased, the recipient lowercased): big senders retry from another
    address of the same pool.
  * A triplet never seen, or whose first attempt is older than
    `retry_window` without a retry that passed, or that passed but went
    unused for `pass_lifetime`, starts now: GREYLISTED 450 4.7.1 saying how
    long to wait. Seen less than `delay` ago: 450 again with the time left.
    A retry after `delay` passes (the triplet is marked passed) and so does
    every later use while it is used at least once per `pass_lifetime`.
  * Automatic pass: each triplet that passes counts for its client network;
    once `auto_allow_clients` (> 0) have passed, the network is not
    greylisted any more while it sends at least once per `pass_lifetime`.
  * Not greylisted: other roles than smtp (port 25), clients in
    `relay_networks` or logged in, `allow_clients`, senders in
    `allow_domains` ("example.org", or ".example.org": its subdomains),
    the null sender (the sender-address verification probes of other MTAs
    use it, and a probe is not retried).
  * The triplets and the networks' counts are `policy.abusestate` tables
    ("greylist", "greylist-client"; wall-clock seconds), so they hold across
    restarts; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pigeon.config.abuse import GreylistConfig
from pigeon.policy.abusestate import StateTable
from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.policy.ratelimit import network_of
from pigeon.policy.relay import RelayNetworks
from pigeon.proto import reply as R
from pigeon.proto.params import RcptParams
from pigeon.vocab.address import Address

__all__ = ["Greylisting"]


def greylisted(wait: float) -> Verdict:
    seconds = max(1, math.ceil(wait))
    return refuse(R.reply(450, "4.7.1", f"Greylisted, please try again in {seconds} seconds"))


class Greylisting:
    """rcpt: greylisting by triplet (module contract)."""

    def __init__(
        self,
        config: GreylistConfig,
        triplets: StateTable,
        clients: StateTable,
        trusted: RelayNetworks,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._triplets = triplets
        self._clients = clients
        self._trusted = trusted
        self._allowed = RelayNetworks(config.allow_clients)
        self._clock = clock

    def _exempt(self, session: SessionFacts) -> bool:
        sender = session.sender
        if sender is None or session.role != "smtp" or self._trusted.trusts(session):
            return True
        if self._allowed.contains(session.client_ip):
            return True
        domain = sender.domain.lower()
        return any(
            domain.endswith(allowed) if allowed.startswith(".") else domain == allowed
            for allowed in self._config.allow_domains
        )

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        if self._exempt(session):
            return None
        config, now = self._config, self._clock()
        network = network_of(session.client_ip)
        client = self._clients.get(network)
        if client is not None and now - client[1] > config.pass_lifetime:
            client = None  # unused too long: counted from nothing again
        auto = config.auto_allow_clients
        if client is not None and auto and client[0] >= auto:
            self._clients.put(network, (client[0], now, 0.0))
            return None
        key = f"{network} {str(session.sender).lower()} {str(recipient).lower()}"
        entry = self._triplets.get(key)
        if entry is not None:
            first, passed, last = entry
            if passed and now - last <= config.pass_lifetime:
                self._triplets.put(key, (first, passed, now))
                return None
            if not passed and now - first <= config.retry_window:
                if now - first < config.delay:
                    return greylisted(config.delay - (now - first))
                self._triplets.put(key, (first, now, now))  # the retry passes
                passed_before = client[0] if client is not None else 0.0
                self._clients.put(network, (passed_before + 1, now, 0.0))
                return None
        self._triplets.put(key, (now, 0.0, now))
        return greylisted(config.delay)
