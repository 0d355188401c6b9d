"""pigeon.signing.signer: which mail gets signatures, and what they cover."""

from __future__ import annotations

import dkim
import pytest

from pigeon.config.dkim import DEFAULT_HEADERS
from pigeon.signing.keys import generate
from pigeon.signing.signer import DkimSigner, from_domain, signed_header_list


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("dkim"), "example.test", "s1")


@pytest.fixture
def signer(pair):
    return DkimSigner({"example.test": pair}, DEFAULT_HEADERS)


def _dns(pair):
    records = {name + ".": value for name, value in pair.dns_records()}
    return lambda name, timeout=5: records.get(name.decode(), "").encode()


MESSAGE = (
    b"Received: from client by us\r\n"
    b"From: Alice <alice@Example.TEST>\r\n"
    b"To: bob@elsewhere.test\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Body line\r\n"
)


def test_two_signatures_rsa_then_ed25519_that_verify(signer, pair):
    fields = signer.signatures(MESSAGE)
    assert [f.split(b"a=", 1)[1].split(b";")[0] for f in fields] == [
        b"rsa-sha256",
        b"ed25519-sha256",
    ]
    assert all(f.startswith(b"DKIM-Signature: ") and f.endswith(b"\r\n") for f in fields)
    signed = b"".join(fields) + MESSAGE
    for index in (0, 1):
        assert dkim.DKIM(signed).verify(idx=index, dnsfunc=_dns(pair))
    for field in fields:
        assert b"c=relaxed/relaxed" in field and b"d=example.test" in field
        assert b" l=" not in field  # RFC 6376 §8.2: the whole body


def test_from_is_oversigned_and_unlisted_headers_are_left_out(signer):
    message = MESSAGE.replace(b"Subject", b"X-Other")
    h = signer.signatures(message)[0].split(b"h=", 1)[1].split(b";", 1)[0]
    names = [n.strip() for n in h.replace(b"\r\n", b"").split(b":")]
    assert names == [b"from", b"from", b"to"]


def test_a_second_from_added_later_breaks_the_signature(signer, pair):
    signed = b"".join(signer.signatures(MESSAGE)) + MESSAGE
    forged = signed.replace(b"To:", b"From: mallory@evil.test\r\nTo:", 1)
    assert not dkim.DKIM(forged).verify(idx=0, dnsfunc=_dns(pair))


def test_relaxed_canonicalisation_survives_refolding(signer, pair):
    signed = b"".join(signer.signatures(MESSAGE)) + MESSAGE
    refolded = signed.replace(b"Subject: hello", b"Subject:   hello  ")
    assert dkim.DKIM(refolded).verify(idx=1, dnsfunc=_dns(pair))


@pytest.mark.parametrize(
    "head",
    [
        b"From: someone@other.test\r\n",  # no keys for that domain
        b"From: someone@sub.example.test\r\n",  # a subdomain has no keys of its own
        b"From: a@example.test\r\nFrom: b@example.test\r\n",  # two From fields
        b"From: a@example.test, b@example.test\r\n",  # two addresses
        b"To: nobody@example.test\r\n",  # no From at all
    ],
)
def test_mail_that_is_not_ours_to_sign_gets_no_signature(signer, head):
    assert signer.signatures(head + b"Subject: x\r\n\r\nbody\r\n") == []


def test_from_domain_reads_the_one_address():
    assert from_domain([("from", ' "Alice, A." <alice@Example.Test>')]) == "example.test"
    assert from_domain([("from", " undisclosed")]) is None


def test_signed_header_list_counts_occurrences():
    fields = [("from", "a"), ("to", "b"), ("to", "c"), ("received", "x")]
    assert signed_header_list(fields, ("from", "to", "cc")) == [b"from", b"from", b"to", b"to"]


REPORT = (
    b"From: Mail Delivery System <MAILER-DAEMON@mail.example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"\r\n"
    b"This is the mail system.\r\n"
)


def test_our_reports_use_the_nearest_parent_domain_with_keys(signer, pair):
    assert signer.signatures(REPORT) == []  # mail.example.test has no keys of its own
    fields = signer.signatures(REPORT, parents=True)
    assert len(fields) == 2 and all(b"d=example.test" in f for f in fields)
    signed = b"".join(fields) + REPORT
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=_dns(pair))


def test_a_parent_of_one_label_never_signs(pair, tmp_path):
    only_tld = DkimSigner({"test": pair}, DEFAULT_HEADERS)
    assert only_tld.signatures(REPORT, parents=True) == []
    # The domain's own keys come first, whatever its parents have.
    mine = generate(tmp_path, "mail.example.test", "s2")
    own = DkimSigner({"mail.example.test": mine, "example.test": pair}, DEFAULT_HEADERS)
    fields = own.signatures(REPORT, parents=True)
    assert fields and b"d=mail.example.test" in fields[0]
