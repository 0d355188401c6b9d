"""`MailAuth`: the inbound SPF, DKIM, DMARC and ARC stage of the receive pipeline.

Contract (the rules users read are docs/mail-auth.md, "Inbound checks"):
  * end_of_data: for a client that is neither logged in nor in
    `relay_networks` (our own senders are not checked) and has an IP
    address (SPF needs one), the findings of
    the message (policy/mailauth/findings.py, computed once) become:
      - one Authentication-Results field (RFC 8601) on top of the message,
        with `[mail_auth] authserv_id` (default `hostname`): spf (MAIL FROM,
        and HELO), dkim (each signature), dmarc, arc, for the checks whose
        policy is not "off";
      - the verdict of the checks whose policy is "enforce", in this order,
        the first permanent refusal winning over any temporary one:
          dmarc  p=reject (sp= for subdomains, after pct=)  550 5.7.1
                 p=quarantine: accepted, "X-Pigeon-Quarantine:" added and,
                 with `quarantine_folder`, delivered into that Maildir++
                 folder of local recipients (transport "local:.Junk")
                 several From: fields or domains (§6.6.1)   550 5.7.1
                 (no From: at all is only dmarc=permerror)
          spf    fail of MAIL FROM or HELO                  550 5.7.23 (RFC 7372)
          dkim   signed, and no signature passes            550 5.7.20 (RFC 7372)
          arc    the chain fails (RFC 8617 §5.2)            550 5.7.29 (RFC 8617 §7.2.2)
        and a DNS failure (temperror) of an enforced check that could
        change its outcome is 451 4.7.x with the reason, or only written
        into the header with `dns_failure = "annotate"`: never a silent pass;
      - a DMARC failure whose ARC chain passes and whose newest sealer is
        in `trusted_arc_sealers` is delivered (RFC 7489 §7.2.1 local policy
        override: reason "mailing_list" when it has a List-Id: field, else
        "trusted_forwarder"), said in the header;
      - every message evaluated against a DMARC record (pass or fail; not
        one answered 451) gives one `DmarcRecord` to the report sink.
    Authentication-Results fields of the message that claim our authserv-id
    are removed in every case (RFC 8601 §5), from our own senders too.
  * rcpt: when `[mail_auth.domains]` gives some domain its own policies,
    a recipient whose policies differ from those of the recipients already
    accepted is answered 452 4.5.3 (RFC 5321 §4.5.3.1.10: the client sends
    it again in another transaction), so every message is judged under one
    set of policies.
  * Where the findings are computed: by `examiner` (policy/mailauth/examine.py)
    in the server's event loop, or, given `remote` (`[mail_auth] checker =
    "process"`) and a message of at least `checker_above` octets (default
    0: all), in the checker process (app/checker.py), with `examiner` as
    the fallback when that process cannot answer or has not yet said it
    is ready (policy/mailauth/remote.py). The round trip costs the event
    loop about a third of the checks themselves (docs/benchmarks.md,
    issue 13). Either way the same rules apply; the DMARC record reaches
    the sink here, in the server.
  * One instance serves every connection; it keeps nothing per session.
"""

from __future__ import annotations

import dataclasses

from pigeon.config.mailauth import CheckPolicies, MailAuthConfig
from pigeon.policy.api import Message, SessionFacts, Verdict
from pigeon.policy.mailauth import outcome as O
from pigeon.policy.mailauth.authres import removals
from pigeon.policy.mailauth.examine import Examiner
from pigeon.policy.mailauth.pool import CheckerPool
from pigeon.policy.relay import RelayNetworks, client_address
from pigeon.proto import reply as R
from pigeon.proto.params import RcptParams
from pigeon.reports.records import ReportSink
from pigeon.vocab.address import Address

__all__ = ["MailAuth"]

_OFF = CheckPolicies("off", "off", "off", "off")


class MailAuth:
    """rcpt, end_of_data: see the module contract."""

    def __init__(
        self,
        config: MailAuthConfig,
        examiner: Examiner,
        networks: RelayNetworks,
        sink: ReportSink,
        *,
        remote: CheckerPool | None = None,
    ) -> None:
        self.config = config
        self.examiner = examiner
        self.networks = networks
        self.sink = sink
        self.authserv_id = examiner.authserv_id
        self.remote = remote

    def _policies(self, session: SessionFacts) -> CheckPolicies:
        if not session.recipients:
            return self.config.policies
        return self.config.policies_for(session.recipients[0][0].domain.lower())

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        if not self.config.domains or not session.recipients:
            return None
        if self.networks.trusts(session):
            return None
        mine = self.config.policies_for(recipient.domain.lower())
        if mine != self._policies(session):
            return Verdict(R.reply(452, "4.5.3", O.DIFFERENT_POLICIES))
        return None

    async def end_of_data(self, session: SessionFacts, message: Message) -> Verdict | None:
        headers = message.headers()
        forged = removals(headers, self.authserv_id)
        policies = self._policies(session)
        if (
            self.networks.trusts(session)
            or policies == _OFF
            or not client_address(session.client_ip)
        ):
            return Verdict(header_edits=forged) if forged else None
        if self.remote is not None and message.size >= self.config.checker_above:
            examined = await self.remote.examine(
                session, message, headers, policies, fallback=self.examiner
            )
        else:
            examined = await self.examiner.examine(session, message, headers, policies)
        if examined.record is not None:
            self.sink.dmarc(examined.record)
        verdict = examined.verdict
        if forged and verdict.reply is None:
            verdict = dataclasses.replace(verdict, header_edits=forged)
        return verdict
