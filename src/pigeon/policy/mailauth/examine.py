"""One message examined: the findings, then the stage's verdict and DMARC report record.

Contract:
  * `Examiner(config, investigator, authserv_id=..., wallclock=...,
    records=True)`; with `records=False` (`[reports] dmarc` off: nobody
    would keep them) no DMARC record is made, which saves its cost per message;
    `await examiner.examine(session, message, headers, policies)` returns
    `Examined(verdict, record)`: the verdict of the checks (a refusal, or
    the Authentication-Results field, the quarantine header and transport,
    docs/mail-auth.md "Inbound checks") and the `DmarcRecord` for the report
    sink (None when no DMARC record was evaluated, or records are off).
  * It runs wherever the checks run: in the server's event loop (`[mail_auth]
    checker = "inline"`) or in the checker process (app/checker.py), which
    sends both values back (policy/mailauth/remote.py). So it keeps nothing
    per message and hands the record back instead of writing it anywhere.
  * What it leaves to the stage (policy/mailauth/check.py), which runs in the
    server: who is checked at all, the removal of forged Authentication-Results
    fields, and the report sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pigeon.config.mailauth import CheckPolicies, MailAuthConfig
from pigeon.policy.api import HeaderField, Message, SessionFacts, Verdict
from pigeon.policy.mailauth import outcome as O
from pigeon.policy.mailauth.authres import FIELD, format_results
from pigeon.policy.mailauth.findings import Findings, Investigator
from pigeon.reports.records import DmarcRecord

__all__ = ["Examined", "Examiner"]


@dataclass(frozen=True, slots=True)
class Examined:
    """What the checks made of one message (module contract)."""

    verdict: Verdict
    record: DmarcRecord | None = None


class Examiner:
    """examine(): see the module contract."""

    def __init__(
        self,
        config: MailAuthConfig,
        investigator: Investigator,
        *,
        authserv_id: str,
        wallclock: Callable[[], float] = time.time,
        records: bool = True,
    ) -> None:
        self.config = config
        self.records = records
        self.investigator = investigator
        self.authserv_id = authserv_id
        self.wallclock = wallclock

    async def examine(
        self,
        session: SessionFacts,
        message: Message,
        headers: Sequence[tuple[str, str]],
        policies: CheckPolicies,
    ) -> Examined:
        found = await self.investigator.investigate(session, message, headers, policies)
        return self.judge(session, headers, found, policies)

    def judge(
        self,
        session: SessionFacts,
        headers: Sequence[tuple[str, str]],
        found: Findings,
        policies: CheckPolicies,
    ) -> Examined:
        decision = O.decide(found, policies, self.config, headers)
        record = (
            O.dmarc_record(session, found, decision, self.wallclock()) if self.records else None
        )
        if decision.reply is not None:
            return Examined(Verdict(decision.reply), record)
        value = format_results(self.authserv_id, O.resinfos(session, found, policies, decision))
        fields = [HeaderField(FIELD, value)]
        transport = None
        if decision.quarantine:
            fields.append(HeaderField("X-Pigeon-Quarantine", decision.quarantine))
            if self.config.quarantine_folder:
                transport = f"local:{self.config.quarantine_folder}"
        return Examined(Verdict(headers=tuple(fields), transport=transport), record)
