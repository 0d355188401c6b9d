"""DKIM signing at the end of the data: the seam between the intake and pigeon.signing.

Contract:
  * `OutboundSigning(signer, networks)` is built by the composition root
    from `[dkim]` and `relay_networks` (None when no domain has keys, or
    `[dkim] sign = false`) and rides in `ReceiveServices.signing`.
  * `applies(facts)`: only mail from our own users is signed: a client
    that logged in, or one in `relay_networks` (`RelayNetworks.trusts`,
    Postfix's permit_mynetworks / permit_sasl_authenticated); mail relayed
    from the Internet to local mailboxes never is. (Local submission,
    `sendmail`, signs in `admin.localsubmit`.) The RFC5322.From domain
    then decides whether and with which keys (`signing.signer`).
  * `signatures(spool, prepended, replaced)` reads the message exactly as
    the commit will store it: the fields the verdict prepends, then the
    content with its head replaced by the milters' and plugins' edits
    (`policy.edits.apply_content_changes` returned `replaced`), so the
    signature covers the final header section and body (RFC 6376 §5: sign
    last, after every change). The reading and the signing run in a worker
    thread (RSA and hashing a large body are CPU work). Memory: one copy
    of the message (bounded by `limits.message_size`) plus dkimpy's
    canonical forms, for the time of the signing.
  * Errors (the spool unreadable, dkimpy refusing a key) raise
    `SigningFailed`; the intake answers 451 4.3.0: a message is never
    sent on unsigned when it should have been signed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pigeon.config.schema import Config
from pigeon.policy.api import SessionFacts
from pigeon.policy.relay import RelayNetworks
from pigeon.queue.api import Spool
from pigeon.signing.signer import DkimSigner, SigningError, signer_for
from pigeon.vocab.errors import StoreError

__all__ = ["OutboundSigning", "SigningFailed", "outbound_signing"]

log = logging.getLogger("pigeon.smtpd")


class SigningFailed(Exception):
    """The message could not be signed (logged; answered 451 4.3.0)."""


class OutboundSigning:
    """Signs our users' mail at the end of the data (module contract)."""

    def __init__(self, signer: DkimSigner, networks: RelayNetworks) -> None:
        self.signer = signer
        self.networks = networks

    def applies(self, facts: SessionFacts) -> bool:
        return self.networks.trusts(facts)

    async def signatures(
        self, spool: Spool, prepended: Sequence[bytes], replaced: tuple[int, bytes] | None
    ) -> list[bytes]:
        skip, head = replaced if replaced is not None else (0, b"")
        try:
            stream = spool.reader(skip)
        except (OSError, StoreError) as exc:
            raise SigningFailed(f"cannot read {spool.queue_id} to sign it: {exc}") from exc

        def sign() -> list[bytes]:
            with stream:
                message = b"".join(prepended) + head + stream.read()
            return self.signer.signatures(message)

        try:
            return await asyncio.to_thread(sign)
        except (OSError, StoreError, SigningError) as exc:
            raise SigningFailed(f"cannot sign {spool.queue_id}: {exc}") from exc


def outbound_signing(config: Config) -> OutboundSigning | None:
    """The signing of `config` (ConfigError naming the key and path of a bad key),
    or None when nothing is to be signed."""
    signer = signer_for(config)
    if signer is None:
        return None
    pairs = signer.keys.values()
    log.info("DKIM: signing for %s", ", ".join(f"{p.domain} ({p.selector})" for p in pairs))
    return OutboundSigning(signer, RelayNetworks(config.relay_networks))
