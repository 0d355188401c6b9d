"""SRS bounces: RCPT TO one of our SRS addresses must carry a good hash and be fresh.

Contract:
  * `SrsRecipients` (rcpt), when `[srs] enabled`: a recipient of the SRS
    form ("SRS0=..." / "SRS1=...", any case) in the SRS domain is checked
    by the codec (forwarding/srs.py) with the wall clock:
      - a bad hash, or an address that does not parse: FORGED_SRS
        `550 5.7.1` (RFC 3463: delivery not authorized): we never made it,
        so we are not a relay for whoever did;
      - an SRS0 timestamp older than `[srs] max_age` days: EXPIRED_SRS
        `550 5.1.1` (the address is no longer a valid mailbox);
      - a good one passes: `RelayControl` and `LocalRecipients` treat it as
        ours (policy/recipients.py `RecipientLookup.local`), and the router
        sends the message to the address it reverses to (routing/resolve.py).
    Any other recipient is not its business. It comes before the relay
    check, so a forged SRS address gets its own answer, not "relay denied".
  * Pure but for the clock, which is injected (`PolicyDeps.wallclock`).
"""

from __future__ import annotations

from collections.abc import Callable

from pigeon.forwarding.srs import SrsError
from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.proto import reply as R
from pigeon.proto.params import RcptParams
from pigeon.routing.resolve import Router
from pigeon.vocab.address import Address

__all__ = ["EXPIRED_SRS", "FORGED_SRS", "SrsRecipients"]

FORGED_SRS = R.reply(550, "5.7.1", "Error: recipient address rejected: invalid SRS address")
EXPIRED_SRS = R.reply(550, "5.1.1", "Error: recipient address rejected: SRS address expired")


class SrsRecipients:
    """rcpt: our SRS addresses only, good and fresh (module contract)."""

    def __init__(self, router: Router, wallclock: Callable[[], float]) -> None:
        self._router = router
        self._wallclock = wallclock

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        router, address = self._router, str(recipient)
        if router.srs is None or not router.is_srs_address(address):
            return None
        try:
            router.srs.reverse(address, self._wallclock())
        except SrsError as exc:
            return refuse(EXPIRED_SRS if exc.reason == "expired" else FORGED_SRS)
        return None
