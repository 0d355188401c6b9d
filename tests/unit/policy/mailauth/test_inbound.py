"""The inbound checks (policy/mailauth) end to end over real DNS on loopback:
each kind of message gets the verdict docs/mail-auth.md ("Inbound checks") documents."""

from __future__ import annotations

import pytest
from conftest import AUTHSERV, CLIENT, FIXTURES, FORGER, LIST_SERVER, results

from pigeon.testing.mailauthkit import arc_seal, message


def test_aligned_spf_and_dkim_pass_and_give_one_authentication_results_header(harness, keys):
    h = harness()
    signed = keys.ed.sign(keys.rsa.sign(message()))
    verdict = h.run(signed)
    assert verdict.reply is None
    value = results(verdict)
    assert value.startswith(f"{AUTHSERV};")
    assert "spf=pass" in value and "smtp.mailfrom=alice@example.org" in value
    assert value.count("dkim=pass") == 2
    assert "header.a=ed25519-sha256" in value and "header.a=rsa-sha256" in value
    assert "dmarc=pass (p=reject sp=reject dis=none) header.from=example.org" in value
    [record] = h.sink.records
    assert (record.disposition, record.dkim_aligned, record.spf_aligned) == ("none", True, True)
    assert record.header_from == "example.org" and record.published.p == "reject"
    assert {d.result for d in record.dkim} == {"pass"}


def test_no_dmarc_record_is_made_when_reports_are_off(harness, keys):
    """`[reports] dmarc = false` (the default): the same verdict, no record (nothing keeps it)."""
    h = harness(reports=False)
    verdict = h.run(keys.rsa.sign(message()))
    assert "dmarc=pass" in results(verdict)
    assert h.sink.records == []


def test_forged_from_of_a_p_reject_domain_is_refused_550_5_7_1(harness):
    h = harness()
    verdict = h.run(message(), ip=FORGER, sender="bounce@other.example", helo="forger.example")
    assert verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (550, "5.7.1")
    assert "example.org publishes a DMARC policy of reject" in verdict.reply.text
    [record] = h.sink.records
    assert record.disposition == "reject" and record.reason is None
    assert not record.dkim_aligned and not record.spf_aligned


def test_a_body_altered_after_signing_fails_dkim_and_is_refused(harness, keys):
    h = harness()
    signed = keys.rsa.sign(message(body="Pay 10 EUR.\r\n"))
    altered = signed.replace(b"Pay 10 EUR.", b"Pay 9999 EUR.")
    verdict = h.run(altered, ip=FORGER, sender="bounce@other.example")
    assert verdict.reply is not None and verdict.reply.code == 550, verdict
    annotated = harness(dmarc="annotate").run(altered, ip=FORGER, sender="bounce@other.example")
    value = results(annotated)
    assert "dkim=fail" in value and "body hash mismatch" in value
    assert "dmarc=fail" in value and "override=local_policy" in value


def test_a_replayed_message_keeps_its_dkim_pass_but_spf_names_the_replaying_client(harness, keys):
    # RFC 6376 §8.6: a replay of a validly signed message verifies; SPF of the
    # envelope sender, from the replaying client, fails.
    signed = keys.rsa.sign(message())
    verdict = harness().run(signed, ip=FORGER)
    value = results(verdict)
    assert verdict.reply is None and "dkim=pass" in value and "dmarc=pass" in value
    assert "spf=fail" in value
    refused = harness(spf="enforce").run(signed, ip=FORGER)
    assert (refused.reply.code, refused.reply.enhanced) == (550, "5.7.23")


def test_a_signature_of_another_domain_does_not_align(harness, keys):
    signed = keys.other.sign(message())  # d=other.example, From: example.org
    verdict = harness().run(signed, ip=FORGER, sender="bounce@other.example")
    assert verdict.reply is not None and verdict.reply.enhanced == "5.7.1"
    value = results(harness(dmarc="annotate").run(signed, ip=FORGER, sender="x@other.example"))
    assert "dkim=pass" in value and "header.d=other.example" in value and "dmarc=fail" in value


def test_relaxed_alignment_takes_the_organizational_domain_and_strict_does_not(harness, keys):
    # From sub.example.org: no record there, example.org's (sp= = p=reject) applies;
    # d=example.org is aligned in relaxed mode (RFC 7489 §3.1.1).
    signed = keys.rsa.sign(message(sender="alice@sub.example.org"))
    relaxed = harness().run(signed, ip=FORGER, sender="x@other.example")
    assert relaxed.reply is None and "dmarc=pass" in results(relaxed)
    # strict.example asks adkim=s: d=mail.strict.example is not strict.example.
    strict = keys.strict_mail.sign(message(sender="alice@strict.example"))
    refused = harness().run(strict, ip=FORGER, sender="x@other.example")
    assert refused.reply is not None and refused.reply.enhanced == "5.7.1"


def test_an_over_long_include_chain_is_spf_permerror_and_dmarc_decides(harness):
    # RFC 7208 §4.6.4: more than 10 look-ups is permerror; no SPF pass for DMARC.
    mail = message(sender="alice@loop.example")
    annotated = results(harness(dmarc="annotate").run(mail, sender="alice@loop.example"))
    assert "spf=permerror" in annotated
    verdict = harness().run(mail, sender="alice@loop.example")
    assert verdict.reply is not None and verdict.reply.code == 550


def test_dns_that_stops_answering_mid_check_is_451_never_a_pass(harness, keys):
    # half.example answers SPF and DMARC but its DKIM key look-up times out.
    signed = keys.half.sign(message(sender="alice@half.example"))
    verdict = harness().run(signed, ip=FORGER, sender="alice@half.example")
    assert verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (451, "4.7.1"), verdict.reply
    assert "try again later" in verdict.reply.text
    # dns_failure = "annotate": accepted, the failure written down.
    value = results(
        harness(dns_failure="annotate").run(signed, ip=FORGER, sender="alice@half.example")
    )
    assert "dkim=temperror" in value and "dmarc=temperror" in value


def test_a_dmarc_record_that_cannot_be_looked_up_is_451(harness):
    verdict = harness().run(message(sender="alice@slow.example"), sender="alice@slow.example")
    assert verdict.reply is not None and verdict.reply.code == 451


def test_a_dns_server_that_stops_gives_451(harness, dns_server, keys):
    h = harness()
    assert h.run(keys.rsa.sign(message())).reply is None
    dns_server.close()  # the server stops answering altogether
    verdict = h.run(message(sender="alice@quarantine.example"), sender="alice@quarantine.example")
    assert verdict.reply is not None and verdict.reply.code == 451, verdict


def test_quarantine_adds_a_header_and_routes_local_mail_to_the_junk_folder(harness):
    mail = message(sender="alice@quarantine.example")
    verdict = harness().run(mail, ip=FORGER, sender="alice@quarantine.example")
    assert verdict.reply is None and verdict.transport == "local:.Junk"
    assert any(f.name == "X-Pigeon-Quarantine" for f in verdict.headers)
    assert "dis=quarantine" in results(verdict)
    inbox = harness(quarantine_folder="").run(mail, ip=FORGER, sender="alice@quarantine.example")
    assert inbox.transport is None
    assert any(f.name == "X-Pigeon-Quarantine" for f in inbox.headers)


def test_pct_samples_a_reject_down_to_quarantine(harness):
    h = harness()
    verdict = h.run(message(sender="a@sampled.example"), ip=FORGER, sender="a@sampled.example")
    assert verdict.reply is None and verdict.transport == "local:.Junk"
    [record] = h.sink.records
    assert (record.disposition, record.reason) == ("quarantine", "sampled_out")


def test_p_none_is_only_reported(harness):
    h = harness()
    verdict = h.run(message(sender="a@none.example"), ip=FORGER, sender="a@none.example")
    assert verdict.reply is None and verdict.transport is None
    assert "dmarc=fail" in results(verdict)
    assert h.sink.records[0].disposition == "none"


def _list_copy(keys) -> bytes:
    """alice@example.org's signed message as a mailing list forwards it: tagged
    subject (her signature breaks), its own AR, then its ARC seal."""
    signed = keys.rsa.sign(message())
    changed = signed.replace(b"Subject: hello", b"Subject: [list] hello")
    changed = changed.replace(b"\r\n\r\n", b"\r\nList-Id: <talk.lists.example>\r\n\r\n", 1)
    ar = b"Authentication-Results: lists.example; dkim=pass header.d=example.org\r\n"
    return arc_seal(ar + changed, keys.lists, "lists.example")


def test_a_trusted_arc_sealer_overrides_a_dmarc_failure(harness, keys):
    forwarded = _list_copy(keys)
    kw = {"ip": LIST_SERVER, "sender": "talk-bounces@lists.example", "helo": "lists.example"}
    untrusted = harness().run(forwarded, **kw)
    assert untrusted.reply is not None and untrusted.reply.enhanced == "5.7.1"
    h = harness(trusted_arc_sealers=["lists.example"])
    verdict = h.run(forwarded, **kw)
    assert verdict.reply is None, verdict.reply
    value = results(verdict)
    assert "arc=pass (i=1 sealer lists.example trusted)" in value
    assert "dmarc=fail" in value and "override=mailing_list" in value
    [record] = h.sink.records
    assert (record.disposition, record.reason) == ("none", "mailing_list")


def test_a_broken_arc_chain_is_refused_under_arc_enforce(harness, keys):
    broken = _list_copy(keys).replace(b"Hi Bob.", b"Hi Bob, changed after sealing.")
    kw = {"ip": LIST_SERVER, "sender": "talk-bounces@lists.example", "helo": "lists.example"}
    verdict = harness(arc="enforce", dmarc="annotate").run(broken, **kw)
    assert verdict.reply is not None and (verdict.reply.code, verdict.reply.enhanced) == (
        550,
        "5.7.29",
    )


def test_authentication_results_claiming_our_id_are_removed(harness, keys):
    forged = (
        f"Authentication-Results: {AUTHSERV.upper()}; dkim=pass header.d=example.org\r\n"
        "Authentication-Results: elsewhere.example; spf=pass\r\n"
        f"Authentication-Results: (comment) {AUTHSERV}; dmarc=pass\r\n"
    ).encode()
    verdict = harness().run(forged + keys.rsa.sign(message()))
    removed = [(e.action, e.name, e.value, e.index) for e in verdict.header_edits]
    assert removed == [
        ("change", "Authentication-Results", "", 3),
        ("change", "Authentication-Results", "", 1),
    ]
    # Our own senders are not checked, but forgeries of our id go all the same.
    trusted = harness(relay=["192.0.2.0/24"]).run(forged + message())
    assert trusted.headers == () and len(trusted.header_edits) == 2


def test_our_own_senders_are_not_checked(harness, dns_server):
    h = harness(relay=["192.0.2.0/24"])
    assert h.run(message(), ip=FORGER, user="alice") is None
    assert h.run(message(), ip=CLIENT) is None
    assert dns_server.queries == []


def test_one_from_domain_is_required(harness):
    two = message().replace(b"To:", b"From: <eve@other.example>\r\nTo:", 1)
    verdict = harness().run(two)
    assert verdict.reply is not None and verdict.reply.enhanced == "5.7.1"
    assert "more than one From" in verdict.reply.text
    # No From: at all names nobody's domain: written down, not refused.
    none = message().replace(b"From: Alice <alice@example.org>\r\n", b"")
    kept = harness().run(none)
    assert kept.reply is None
    value = results(kept)
    assert "dmarc=permerror" in value and "no From" in value


def test_spf_enforce_refuses_a_fail_and_tempfails_a_dns_failure(harness):
    verdict = harness(spf="enforce", dmarc="annotate").run(message(), ip=FORGER)
    assert (verdict.reply.code, verdict.reply.enhanced) == (550, "5.7.23")
    # DMARC comes first in the documented order: its refusal is the one given.
    first = harness(spf="enforce").run(message(), ip=FORGER)
    assert (first.reply.code, first.reply.enhanced) == (550, "5.7.1")
    slow = harness(spf="enforce", dmarc="off").run(message(), sender="a@slow.example")
    assert (slow.reply.code, slow.reply.enhanced) == (451, "4.7.24")


def test_dkim_enforce_refuses_a_message_whose_signatures_all_fail(harness, keys):
    altered = keys.rsa.sign(message()).replace(b"Hi Bob.", b"Hi Eve.")
    verdict = harness(dkim="enforce", dmarc="off").run(altered)
    assert (verdict.reply.code, verdict.reply.enhanced) == (550, "5.7.20")
    unsigned = harness(dkim="enforce", dmarc="off").run(message())
    assert unsigned.reply is None and "dkim=none" in results(unsigned)


def test_signature_and_key_size_limits(harness, keys):
    three = keys.ed.sign(keys.rsa.sign(keys.other.sign(message())))
    value = results(harness(max_signatures=2).run(three))
    assert value.count("dkim=pass") == 2 and "dkim=policy" in value
    assert "over max_signatures" in value
    big = results(harness(min_key_bits=3072, max_key_bits=4096).run(keys.rsa.sign(message())))
    assert "dkim=policy" in big and "under min_key_bits" in big


def test_rfc_6376_and_rfc_8463_signed_examples_verify(harness):
    h = harness(dmarc="off", spf="off")
    rfc6376 = (FIXTURES / "rfc6376-appendix-a2.eml").read_bytes()
    value = results(h.run(rfc6376, sender="joe@football.example.com"))
    assert "dkim=pass header.d=example.com header.s=brisbane header.a=rsa-sha256" in value
    rfc8463 = (FIXTURES / "rfc8463-appendix-a3.eml").read_bytes()
    value = results(h.run(rfc8463, sender="joe@football.example.com"))
    assert (
        "dkim=pass header.d=football.example.com header.s=brisbane header.a=ed25519-sha256" in value
    )
    assert "dkim=pass header.d=football.example.com header.s=test header.a=rsa-sha256" in value
    tampered = rfc8463.replace(b"Are you hungry", b"Are you thirsty")
    assert results(h.run(tampered)).count("dkim=fail") == 2


def test_keys_are_asked_through_our_resolver_and_answers_are_cached(harness, keys, dns_server):
    h = harness()
    signed = keys.ed.sign(keys.rsa.sign(message()))
    assert h.run(signed).reply is None
    asked = [(name, rdtype) for name, rdtype, _ in dns_server.queries]
    assert ("s2048._domainkey.example.org", "TXT") in asked
    assert ("ed._domainkey.example.org", "TXT") in asked
    assert ("_dmarc.example.org", "TXT") in asked
    before = len(dns_server.queries)
    assert h.run(signed).reply is None  # within the TTLs: nothing asked again
    assert len(dns_server.queries) == before


def test_a_sender_seen_before_is_checked_from_kept_results_until_their_ttls_end(
    harness, keys, monkeypatch
):
    """SPF results, the DMARC policy and the keys are kept as long as the DNS
    answers behind them (policy/mailauth/memo.py): the next message of the
    sender asks nothing, not even the cache; past the TTLs all is asked again."""
    h = harness()
    signed = keys.rsa.sign(message())
    first = results(h.run(signed))
    assert "dkim=pass" in first and "dmarc=pass" in first

    async def no_dns(kind, name):
        raise AssertionError(f"asked for {kind} {name}")

    monkeypatch.setattr(h.resolver, "_get", no_dns)
    assert results(h.run(signed)) == first
    later = h.resolver.now() + 86400 + 1
    monkeypatch.setattr(h.resolver, "_clock", lambda: later)
    with pytest.raises(AssertionError, match="asked for"):
        h.run(signed)


def test_recipients_of_domains_with_other_policies_go_in_another_transaction(harness):
    import asyncio

    from pigeon.policy.api import SessionFacts
    from pigeon.proto.params import RcptParams
    from pigeon.vocab.address import Address

    h = harness(domains={"strict.test": {"spf": "enforce"}})
    first = (Address("bob", "example.test"), RcptParams())
    facts = SessionFacts(FORGER, recipients=[first])
    other = h.check.rcpt(facts, Address("carol", "strict.test"), RcptParams())
    assert other is not None and (other.reply.code, other.reply.enhanced) == (452, "4.5.3")
    assert h.check.rcpt(facts, Address("dave", "example.test"), RcptParams()) is None
    # the message to strict.test alone is judged by its policy
    alone = SessionFacts(FORGER, recipients=[(Address("carol", "strict.test"), RcptParams())])
    assert h.check.config.policies_for("strict.test").spf == "enforce"
    assert h.check._policies(alone).spf == "enforce"
    asyncio.get_event_loop_policy()  # no loop needed: rcpt answers at once
