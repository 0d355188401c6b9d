"""The schema of the inbound mail authentication checks: [mail_auth].

Contract: like `pigeon.config.schema` (which holds this as the `Config`
field `mail_auth`): frozen dataclasses, one documented field each, the
TOML key, default and unit in its comment; docs/config.md agrees. The
checks of the values are `pigeon.config._mailauth`; the check that uses
them is `pigeon.policy.mailauth` (docs/mail-auth.md, "Inbound checks").

A policy is "off" (not checked), "annotate" (checked, written into the
Authentication-Results header, never refused) or "enforce" (checked, and
the failures the docs name are refused at end of data).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Literal

Policy = Literal["off", "annotate", "enforce"]


@dataclass(frozen=True, slots=True)
class CheckPolicies:
    """The policy of each check; one set for the server, one per
    [mail_auth.domains.NAME], where a key left out (None) is the server's."""

    spf: Policy | None = (
        "annotate"  # [mail_auth] spf: SPF (RFC 7208) of MAIL FROM and HELO; enforce: fail -> 550 5.7.23
    )
    dkim: Policy | None = (
        "annotate"  # [mail_auth] dkim: DKIM (RFC 6376, RFC 8463); enforce: signed, none passes -> 550 5.7.20
    )
    dmarc: Policy | None = (
        "enforce"  # [mail_auth] dmarc: DMARC (RFC 7489); enforce honours p=reject (550 5.7.1) and p=quarantine
    )
    arc: Policy = (
        "annotate"  # [mail_auth] arc: ARC (RFC 8617); enforce: a failed chain -> 550 5.7.29
    )


@dataclass(frozen=True, slots=True)
class MailAuthConfig:
    """[mail_auth]: SPF, DKIM, DMARC and ARC verification of received mail."""

    spf: Policy = "annotate"  # [mail_auth] spf (see CheckPolicies)
    dkim: Policy = "annotate"  # [mail_auth] dkim
    dmarc: Policy = "enforce"  # [mail_auth] dmarc
    arc: Policy = "annotate"  # [mail_auth] arc
    #: [mail_auth.domains."example.org"]: policies for mail to that recipient
    #: domain (keys spf, dkim, dmarc, arc; the others stay the server's).
    domains: dict[str, CheckPolicies] = field(default_factory=dict)
    authserv_id: str = ""  # [mail_auth] authserv_id: our name in Authentication-Results (RFC 8601 §2.5); "" = `hostname`
    dns_failure: Literal["tempfail", "annotate"] = (
        "tempfail"  # [mail_auth] dns_failure: a DNS failure (temperror) of an enforced check -> 451 4.7.x, or only annotate
    )
    trusted_arc_sealers: tuple[
        str, ...
    ] = ()  # [mail_auth] trusted_arc_sealers: domains (d= of the newest ARC-Seal) whose valid chain overrides a DMARC failure
    quarantine_folder: str = ".Junk"  # [mail_auth] quarantine_folder: Maildir++ folder for DMARC p=quarantine mail to local mailboxes; "" = the inbox
    max_signatures: int = 5  # [mail_auth] max_signatures: DKIM signatures verified per message (more are "policy"); >= 1
    min_key_bits: int = (
        1024  # [mail_auth] min_key_bits: smaller RSA keys fail (RFC 8301 §3.2); >= 512
    )
    max_key_bits: int = (
        8192  # [mail_auth] max_key_bits: larger RSA keys are not used (permerror); >= min_key_bits
    )
    checker: Literal["process", "inline"] = (
        "process"  # [mail_auth] checker: run the checks of big messages in a process of their own (another core), or all "inline" in the server's event loop
    )
    checkers: int = 1  # [mail_auth] checkers: with checker = "process", how many checker processes share the checks (messages that end together are checked at once); 1-16
    checker_above: int = 0  # [mail_auth] checker_above, octets: with checker = "process", messages at least this big are checked there, smaller ones inline; 0 = all
    public_suffix_list: Path | None = (
        None  # [mail_auth] public_suffix_list: a Public Suffix List file; "" (None) = the one of the publicsuffixlist package
    )

    @property
    def policies(self) -> CheckPolicies:
        """The server's policies (the keys spf, dkim, dmarc, arc)."""
        return CheckPolicies(self.spf, self.dkim, self.dmarc, self.arc)

    def policies_for(self, domain: str) -> CheckPolicies:
        """The policies of mail to recipient `domain` (lowercased)."""
        found = self.domains.get(domain)
        if found is None:
            return self.policies
        return CheckPolicies(
            *(o or s for o, s in zip(astuple(found), astuple(self.policies), strict=True))
        )

    @property
    def enabled(self) -> bool:
        """Some check is on somewhere."""
        every = [self.policies, *(self.policies_for(d) for d in self.domains)]
        return any(p != CheckPolicies("off", "off", "off", "off") for p in every)
