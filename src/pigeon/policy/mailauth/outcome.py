"""From findings to what the stage does: the decision, the header's results, the report record.

Contract (pure; the rules are listed in policy/mailauth/check.py and
docs/mail-auth.md, "Inbound checks"):
  * `decide(found, policies, config, headers)` is the `Decision`: the
    refusal (the first permanent one, else the first temporary one, else
    none), the quarantine reason, and the DMARC disposition and override
    reason (RFC 7489 Appendix C `PolicyOverrideType`) for the report.
  * `resinfos(session, found, policies, decision)` lists the results of
    the checks that are on, for the Authentication-Results field.
  * `dmarc_record(...)` is the `DmarcRecord` of a message evaluated against
    a DMARC record (pass or fail), None otherwise or when the answer is a
    temporary refusal (the client will send it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pigeon.config.mailauth import CheckPolicies, MailAuthConfig
from pigeon.policy.api import SessionFacts
from pigeon.policy.mailauth.authres import Resinfo
from pigeon.policy.mailauth.findings import Findings
from pigeon.policy.spf import SpfResult
from pigeon.proto import reply as R
from pigeon.proto.reply import Reply
from pigeon.reports.records import DkimAuth, DmarcPublished, DmarcRecord, SpfAuth

__all__ = ["DIFFERENT_POLICIES", "Decision", "decide", "dmarc_record", "resinfos"]

DIFFERENT_POLICIES = (
    "Error: this recipient's domain has other mail authentication policies; "
    "send it in another transaction"
)


@dataclass(slots=True)
class Decision:
    reply: Reply | None = None
    quarantine: str = ""
    disposition: str = "none"  # DMARC: what we did (none | quarantine | reject)
    override: str | None = None  # PolicyOverrideType, when not as published
    arc_trusted: bool = False
    perm: list[Reply] = field(default_factory=list)
    temp: list[Reply] = field(default_factory=list)


def _later(what: str, why: object) -> str:
    return f"{what} could not be completed ({why}), try again later"


def _arc_trusted(found: Findings, config: MailAuthConfig) -> bool:
    arc = found.arc
    return arc is not None and arc.result == "pass" and arc.sealer in config.trusted_arc_sealers


def _dmarc(
    found: Findings,
    enforce: bool,
    tempfail: bool,
    headers: Sequence[tuple[str, str]],
    out: Decision,
) -> None:
    author, result, policy = found.author, found.dmarc, found.dmarc_policy
    if author is None:
        return
    if author.problem:
        if enforce and author.ambiguous:  # RFC 7489 §6.6.1
            out.perm.append(
                R.reply(
                    550,
                    "5.7.1",
                    f"Message rejected: {author.problem}; DMARC (RFC 7489 §6.6.1) needs one author domain",
                )
            )
        return
    if found.dmarc_lookup_failed is not None:
        if enforce and tempfail:
            out.temp.append(
                R.reply(
                    451,
                    "4.7.1",
                    _later(
                        f"DMARC policy look-up of {author.domain}", found.dmarc_lookup_failed.reason
                    ),
                )
            )
        return
    if result is None or policy is None or result.result == "pass":
        return
    if result.result == "temperror":
        if enforce and tempfail and result.policy != "none":
            out.temp.append(
                R.reply(
                    451,
                    "4.7.1",
                    _later(f"DMARC check of {author.domain}", "DNS failure of SPF or DKIM"),
                )
            )
        return
    if result.sampled_out:
        out.override = "sampled_out"
    if result.policy == "none":
        return
    if out.arc_trusted:  # RFC 7489 §7.2.1: local policy override for a trusted forwarder
        has_list_id = any(n.lower() == "list-id" for n, _ in headers)
        out.override = "mailing_list" if has_list_id else "trusted_forwarder"
    elif not enforce:
        out.override = "local_policy"
    elif result.policy == "reject":
        out.disposition = "reject"
        out.perm.append(
            R.reply(
                550,
                "5.7.1",
                f"Message rejected: {author.domain} publishes a DMARC policy of reject "
                "and this message is not authenticated by an aligned SPF or DKIM domain "
                "(RFC 7489 §6.6)",
            )
        )
    else:
        out.disposition = "quarantine"
        how = "p=quarantine" if not result.sampled_out else f"p={policy.p}, pct={policy.pct}"
        out.quarantine = (
            f"DMARC policy of {policy.domain} ({how}): "
            "not authenticated by an aligned SPF or DKIM domain"
        )


def decide(
    found: Findings,
    policies: CheckPolicies,
    config: MailAuthConfig,
    headers: Sequence[tuple[str, str]],
) -> Decision:
    """The decision of the checks (module contract)."""
    tempfail = config.dns_failure == "tempfail"
    out = Decision(arc_trusted=policies.arc != "off" and _arc_trusted(found, config))
    _dmarc(found, policies.dmarc == "enforce", tempfail, headers, out)
    if policies.spf == "enforce":
        for identity, result in (("MAIL FROM", found.spf_mfrom), ("HELO", found.spf_helo)):
            if result is None:
                continue
            if result.result == "fail":
                why = f": {result.explanation}" if result.explanation else ""
                out.perm.append(
                    R.reply(
                        550,
                        "5.7.23",
                        f"SPF validation failed: {result.domain} ({identity}) does not permit this client to send its mail{why}",
                    )
                )
            elif result.result == "temperror" and tempfail:
                out.temp.append(
                    R.reply(
                        451,
                        "4.7.24",
                        _later(f"SPF check of {result.domain}", result.problem or "DNS failure"),
                    )
                )
    if (
        policies.dkim == "enforce"
        and found.dkim
        and not any(d.result == "pass" for d in found.dkim)
    ):
        if any(d.result == "temperror" for d in found.dkim):
            if tempfail:
                out.temp.append(
                    R.reply(451, "4.7.20", _later("DKIM verification", "key look-up failed"))
                )
        else:
            first = found.dkim[0]
            out.perm.append(
                R.reply(
                    550,
                    "5.7.20",
                    f"No passing DKIM signature found ({first.domain}: {first.result}, {first.reason})",
                )
            )
    if policies.arc == "enforce" and found.arc is not None:
        if found.arc.result == "fail":
            out.perm.append(R.reply(550, "5.7.29", f"ARC validation failure: {found.arc.reason}"))
        elif found.arc.result == "temperror" and tempfail:
            out.temp.append(R.reply(451, "4.7.29", _later("ARC validation", found.arc.reason)))
    out.reply = out.perm[0] if out.perm else out.temp[0] if out.temp else None
    if out.perm and out.disposition != "reject":
        out.disposition, out.override = "reject", out.override or "local_policy"
    return out


def resinfos(
    session: SessionFacts, found: Findings, policies: CheckPolicies, decision: Decision
) -> list[Resinfo]:
    """The results written into Authentication-Results (module contract)."""
    out: list[Resinfo] = []
    if policies.spf != "off" and found.spf_mfrom is not None:
        if found.sender:
            out.append(_spf(found.spf_mfrom, session.client_ip, "smtp.mailfrom", found.sender))
        if found.spf_helo is not None:
            out.append(_spf(found.spf_helo, session.client_ip, "smtp.helo", found.helo))
    if policies.dkim != "off":
        if not found.dkim:
            out.append(Resinfo("dkim", "none", "message not signed"))
        for d in found.dkim:
            props = (
                ("header.d", d.domain),
                ("header.s", d.selector),
                ("header.a", d.algorithm),
                ("header.b", d.b),
            )
            out.append(
                Resinfo(
                    "dkim", d.result, props=props, reason=d.reason if d.result != "pass" else ""
                )
            )
    if found.author is not None and policies.dmarc != "off":
        out.append(_dmarc_info(found, decision))
    if policies.arc != "off":
        arc = found.arc
        if arc is None:
            out.append(Resinfo("arc", "none"))
        else:
            comment = f"i={arc.instances} sealer {arc.sealer}" + (
                " trusted" if decision.arc_trusted else ""
            )
            reason = arc.reason if arc.result not in ("pass", "none") else ""
            out.append(
                Resinfo(
                    "arc", arc.result, comment, (("smtp.remote-ip", session.client_ip),), reason
                )
            )
    return out


def _spf(result: SpfResult, ip: str, prop: str, identity: str) -> Resinfo:
    verdict = str(result.result)
    comment = (
        f"{result.domain}: {ip} is {'' if verdict == 'pass' else 'not '}permitted"
        if verdict in ("pass", "fail", "softfail")
        else ""
    )
    return Resinfo("spf", verdict, comment, ((prop, identity),), result.problem or "")


def _dmarc_info(found: Findings, decision: Decision) -> Resinfo:
    author = found.author
    assert author is not None
    if author.problem:
        return Resinfo("dmarc", "permerror", reason=author.problem)
    props = (("header.from", author.domain),)
    if found.dmarc_lookup_failed is not None:
        return Resinfo("dmarc", "temperror", props=props, reason=found.dmarc_lookup_failed.reason)
    policy, result = found.dmarc_policy, found.dmarc
    if policy is None or result is None:
        return Resinfo("dmarc", "none", props=props)
    comment = f"p={policy.p} sp={policy.sp} dis={decision.disposition}"
    if decision.override:
        comment += f" override={decision.override}"
    return Resinfo("dmarc", result.result, comment, props)


def dmarc_record(
    session: SessionFacts, found: Findings, decision: Decision, now: float
) -> DmarcRecord | None:
    """The report record of the message (module contract)."""
    result, policy, author = found.dmarc, found.dmarc_policy, found.author
    if result is None or policy is None or author is None or result.result == "temperror":
        return None
    if decision.reply is not None and decision.reply.transient:
        return None
    spf: list[SpfAuth] = []
    if found.spf_mfrom is not None:
        scope = "mfrom" if found.sender else "helo"
        spf.append(SpfAuth(found.spf_identity[1], scope, str(found.spf_mfrom.result)))
    return DmarcRecord(
        when=now,
        source_ip=session.client_ip,
        header_from=author.domain,
        envelope_from=found.sender.rpartition("@")[2].lower(),
        published=DmarcPublished(
            policy.domain, policy.adkim, policy.aspf, policy.p, policy.sp, policy.pct
        ),
        disposition=decision.disposition,
        dkim_aligned=result.dkim_aligned,
        spf_aligned=result.spf_aligned,
        dkim=tuple(DkimAuth(d.domain, d.selector, d.result) for d in found.dkim),
        spf=tuple(spf),
        reason=decision.override,
    )
