"""The lean DKIM verifier (policy/mailauth/dkimfast.py) against the RFC examples and,
differentially, against dkimpy on many signed and then altered messages."""

from __future__ import annotations

import base64
import dataclasses
import functools
import time
from collections.abc import Callable

import dkim
import dkim.util
import pytest
from conftest import FIXTURES, RFC6376_KEY, RFC8463_ED25519, RFC8463_RSA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pigeon.policy.mailauth import dkimfast
from pigeon.policy.mailauth.keys import KeyAnswers
from pigeon.policy.mailauth.verify import DkimLimits, verify_dkim
from pigeon.testing.mailauthkit import DkimKey

NOW = time.time()
DAY = 86400


class Signers:
    """One RSA and one Ed25519 key, made once for the module (key generation is slow)."""

    def __init__(self) -> None:
        self.rsa = DkimKey.rsa("r", "example.org", bits=1024)
        self.ed = DkimKey.ed25519("e", "example.org")

    def record(self, key: DkimKey) -> str:
        return key.record


_SIGNERS: list[Signers] = []


def signers() -> Signers:
    if not _SIGNERS:
        _SIGNERS.append(Signers())
    return _SIGNERS[0]


def sign(
    content: bytes,
    key: DkimKey,
    *,
    canon: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
    headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date"),
    length: bool = False,
    identity: bytes | None = None,
) -> bytes:
    """`content` signed by dkimpy (the independent signer)."""
    signature = dkim.sign(
        content,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        signature_algorithm=key.algorithm.encode(),
        identity=identity,
        canonicalize=canon,
        include_headers=list(headers),
        length=length,
    )
    return bytes(signature) + content


def sign_with_tags(
    content: bytes, key: DkimKey, extra: list[tuple[bytes, bytes]], h: bytes
) -> bytes:
    """A signature with tags dkimpy's sign() does not write (x=, no From), made
    with dkimpy's own header hashing and signing (DomainSigner.gen_header)."""
    signer = dkim.DKIM(content, signature_algorithm=key.algorithm.encode())
    signer.hasher = dkim.HASH_ALGORITHMS[key.algorithm.encode()]
    canon = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body = canon.canonicalize_body(signer.body)
    bh = base64.b64encode(signer.hasher(body).digest())
    if key.algorithm == "rsa-sha256":
        private = dkim.parse_pem_private_key(key.private)
    else:
        import nacl.encoding
        import nacl.signing

        private = nacl.signing.SigningKey(key.private, encoder=nacl.encoding.Base64Encoder)
    fields = [
        (b"v", b"1"),
        (b"a", key.algorithm.encode()),
        (b"c", b"relaxed/relaxed"),
        (b"d", key.domain.encode()),
        (b"s", key.selector.encode()),
        *extra,
        (b"h", h),
        (b"bh", bh),
        (b"b", b"0" * 60),
    ]
    include = [x.strip().lower() for x in h.split(b":")]
    value = signer.gen_header(fields, include, canon, b"DKIM-Signature", private)
    return b"DKIM-Signature: " + value + content


def by_dkimpy(content: bytes, record: str, index: int = 0) -> bool:
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode()

    try:
        return bool(dkim.DKIM(content).verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def by_fast(content: bytes, record: str, index: int = 0) -> tuple[str, str] | None:
    parsed = dkimfast.parse_message(content)
    assert parsed is not None
    key = dkimfast.parse_key(record)
    assert isinstance(key, dkimfast.PublicKey)
    tags = dkim.util.parse_tag_value(parsed.headers[parsed.signatures[index]][1])
    return dkimfast.verify(
        parsed,
        index,
        key,
        domain=tags[b"d"].decode().lower(),
        selector=tags[b"s"].decode(),
        now=NOW,
    )


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# -- the RFCs' signed examples ------------------------------------------------------------


def test_the_rfc_6376_example_passes_and_fails_when_altered():
    rfc6376 = (FIXTURES / "rfc6376-appendix-a2.eml").read_bytes()
    assert by_fast(rfc6376, RFC6376_KEY) == ("pass", "")
    tampered = rfc6376.replace(b"Are you hungry", b"Are you thirsty")
    assert by_fast(tampered, RFC6376_KEY) == ("fail", "body hash mismatch")
    renamed = rfc6376.replace(b"Subject: Is dinner ready?", b"Subject: Is lunch ready?")
    assert by_fast(renamed, RFC6376_KEY) == ("fail", "signature did not verify")


def test_the_rfc_8463_example_passes_with_both_signatures_and_fails_when_altered():
    rfc8463 = (FIXTURES / "rfc8463-appendix-a3.eml").read_bytes()
    assert by_fast(rfc8463, RFC8463_ED25519, 0) == ("pass", "")
    assert by_fast(rfc8463, RFC8463_RSA, 1) == ("pass", "")
    tampered = rfc8463.replace(b"Are you hungry", b"Are you thirsty")
    assert by_fast(tampered, RFC8463_ED25519, 0) == ("fail", "body hash mismatch")
    renamed = rfc8463.replace(b"Subject: Is dinner", b"Subject: Is lunch")
    assert by_fast(renamed, RFC8463_ED25519, 0) == ("fail", "signature did not verify")
    assert by_fast(renamed, RFC8463_RSA, 1) == ("fail", "signature did not verify")


# -- differential: dkimpy signs, both verify, the verdicts agree --------------------------

BODIES = [
    "Hi Bob.\n",
    "",
    "\n",
    "Hi Bob.\n\n\n\n",
    "trailing spaces   \nand\ttabs\t \n  indented\n",
    "no final line end",
    "a\n\n\nb\n \n\t\n",
    "x" * 3000 + "\n" + "long  line with   runs\n",
]

HEADS = [
    "From: Alice <alice@example.org>\nTo: <bob@example.test>\nSubject: hello\n"
    "Date: Sun, 06 Dec 2026 07:00:00 +0000\n",
    # folded fields, odd whitespace, a repeated field, names in other case
    "From: Alice\n  <alice@example.org>\nTO:   <bob@example.test>  \nSubject:\thello\n\tworld \n"
    "X-Tag: one\nDate: Sun, 06 Dec 2026 07:00:00 +0000\nX-Tag: two\n",
    # an mbox "From " line and a field without a value
    "From alice@example.org Sun Dec  6 06:59:00 2026\n"
    "Received: by mx.example.org; Sun, 06 Dec 2026 06:59:00 +0000\nFrom: a@example.org\n"
    "Keywords:\nSubject: hello\nTo: b@example.test\n",
]

SIGNED_FIELDS = [
    (b"from", b"to", b"subject", b"date"),
    # repeated (x-tag twice, from oversigned) and missing (reply-to, cc) fields
    (b"from", b"x-tag", b"x-tag", b"subject", b"reply-to", b"from", b"cc"),
]

CANONS = [(h, b) for h in (b"simple", b"relaxed") for b in (b"simple", b"relaxed")]


def _flip_tag(content: bytes, tag: bytes) -> bytes:
    """One base64 character of the first signature's `tag=` value changed (still base64)."""
    at = content.index(b" " + tag + b"=") + len(tag) + 2
    seen = 0
    while seen < 4:  # the fourth base64 character, past any folding
        seen += content[at : at + 1].isalnum()
        at += 1
    at -= 1
    char = content[at : at + 1]
    return content[:at] + (b"B" if char != b"B" else b"C") + content[at + 1 :]


def _split(content: bytes) -> tuple[bytes, bytes]:
    head, _, body = content.partition(b"\r\n\r\n")
    return head + b"\r\n", body


Mutation = Callable[[bytes], bytes]

MUTATIONS: dict[str, Mutation] = {
    "none": lambda m: m,
    "body byte": lambda m: _split(m)[0] + b"\r\n" + _split(m)[1].replace(b"o", b"0", 1) + b"!",
    "body appended": lambda m: m + b"P.S. more\r\n",
    "empty lines appended": lambda m: m + b"\r\n\r\n",
    "trailing space": lambda m: m[:-2] + b" \r\n" if m.endswith(b"\r\n") else m + b" ",
    "space run in body": lambda m: _split(m)[0] + b"\r\n" + _split(m)[1].replace(b" ", b"  ", 1),
    "tab in body": lambda m: _split(m)[0] + b"\r\n" + _split(m)[1].replace(b" ", b"\t", 1),
    "subject changed": lambda m: m.replace(b"hello", b"hellO", 1),
    "header whitespace": lambda m: m.replace(b"Subject:", b"Subject:  ", 1),
    "header name case": lambda m: m.replace(b"Subject:", b"SUBJECT:", 1),
    "header refolded": lambda m: m.replace(b"<alice@", b"\r\n <alice@", 1),
    "field added on top": lambda m: b"Subject: other\r\n" + m,
    "field added below": lambda m: _split(m)[0] + b"Subject: other\r\n\r\n" + _split(m)[1],
    "second From on top": lambda m: b"From: mallory@example.net\r\n" + m,
    "unsigned field added": lambda m: _split(m)[0] + b"X-Other: 1\r\n\r\n" + _split(m)[1],
    "missing field added": lambda m: (
        _split(m)[0] + b"Reply-To: x@example.net\r\n\r\n" + _split(m)[1]
    ),
    "fields reordered": lambda m: _swap(m, b"To:", b"Subject:"),
    "repeated fields reordered": lambda m: _swap(m, b"X-Tag: one", b"X-Tag: two"),
    "field removed": lambda m: _drop(m, b"Date:"),
    "b= damaged": lambda m: _flip_tag(m, b"b"),
    "bh= damaged": lambda m: _flip_tag(m, b"bh"),
}


def _lines(content: bytes) -> tuple[list[bytes], bytes]:
    head, body = _split(content)
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields, body


def _join(fields: list[bytes], body: bytes) -> bytes:
    return b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def _swap(content: bytes, first: bytes, second: bytes) -> bytes:
    fields, body = _lines(content)
    a = next((i for i, f in enumerate(fields) if f.startswith(first)), None)
    b = next((i for i, f in enumerate(fields) if f.startswith(second)), None)
    if a is None or b is None:
        return content
    fields[a], fields[b] = fields[b], fields[a]
    return _join(fields, body)


def _drop(content: bytes, name: bytes) -> bytes:
    fields, body = _lines(content)
    return _join([f for f in fields if not f.startswith(name)], body)


def _cases() -> list[tuple[str, tuple[bytes, bytes], int, int, int, bool]]:
    """Every key, canonicalisation, header section and body; signed fields and l= vary
    with them (the full product would make the test slow without finding more)."""
    return [
        (algorithm, canon, head, body, (head + body) % 2, (body // 2 + head) % 2 == 1)
        for algorithm in ("rsa", "ed")
        for canon in CANONS
        for head in range(len(HEADS))
        for body in range(len(BODIES))
    ]


@functools.cache
def _signed(
    algorithm: str, canon: tuple[bytes, bytes], head: int, body: int, fields: int, length: bool
) -> bytes:
    key = signers().rsa if algorithm == "rsa" else signers().ed
    original = crlf(HEADS[head] + "\n" + BODIES[body])
    return sign(original, key, canon=canon, headers=SIGNED_FIELDS[fields], length=length)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_fast_path_and_dkimpy_agree_on_signed_and_altered_messages(mutation):
    keys = signers()
    agreed = passed = 0
    for algorithm, canon, head, body, fields, length in _cases():
        key = keys.rsa if algorithm == "rsa" else keys.ed
        signed = _signed(algorithm, canon, head, body, fields, length)
        altered = MUTATIONS[mutation](signed)
        expected = by_dkimpy(altered, key.record)
        got = by_fast(altered, key.record)
        assert got is not None, (algorithm, canon, head, body, fields, length)
        assert (got[0] == "pass") == expected, (algorithm, canon, head, body, fields, length, got)
        agreed += 1
        passed += expected
    assert agreed == len(_cases())
    if mutation == "none":
        assert passed == agreed  # every untouched message verifies
    if mutation in ("subject changed", "b= damaged", "bh= damaged"):
        assert passed == 0


def test_expiry_and_timestamps_are_judged_as_dkimpy_does_beyond_its_slack():
    keys = signers()
    content = crlf(HEADS[0] + "\n" + BODIES[0])
    for key in (keys.rsa, keys.ed):
        past = [(b"t", str(int(NOW - 3 * DAY)).encode()), (b"x", str(int(NOW - 2 * DAY)).encode())]
        expired = sign_with_tags(content, key, past, b"from:to:subject")
        assert by_fast(expired, key.record) == ("fail", "signature expired (x=)")
        assert not by_dkimpy(expired, key.record)
        future = [(b"t", str(int(NOW)).encode()), (b"x", str(int(NOW + DAY)).encode())]
        valid = sign_with_tags(content, key, future, b"from:to:subject")
        assert by_fast(valid, key.record) == ("pass", "")
        assert by_dkimpy(valid, key.record)
        backwards = [(b"t", str(int(NOW)).encode()), (b"x", str(int(NOW - DAY)).encode())]
        odd = sign_with_tags(content, key, backwards, b"from:to:subject")
        assert by_fast(odd, key.record) == ("permerror", "x= is before t=")
        assert not by_dkimpy(odd, key.record)


# -- rules dkimpy does not apply ----------------------------------------------------------


def test_a_signature_that_does_not_sign_from_is_a_permerror():
    key = signers().rsa
    unsigned_from = sign_with_tags(crlf(HEADS[0] + "\nHi\n"), key, [], b"to:subject")
    assert by_fast(unsigned_from, key.record) == ("permerror", "From is not signed (h=)")


def test_i_must_be_d_or_below_and_exactly_d_under_a_strict_key():
    key = signers().ed
    content = crlf(HEADS[0] + "\nHi\n")
    below = sign(content, key, identity=b"alice@mail.example.org")
    assert by_fast(below, key.record) == ("pass", "")
    strict = key.record + "; t=s"
    assert by_fast(below, strict) == ("permerror", "i= domain is not d= and the key has t=s")
    same = sign(content, key, identity=b"alice@example.org")
    assert by_fast(same, strict) == ("pass", "")
    elsewhere = sign_with_tags(content, key, [(b"i", b"@example.net")], b"from:to")
    assert by_fast(elsewhere, key.record) == ("fail", "i= domain is not d= or a subdomain of it")
    assert not by_dkimpy(elsewhere, key.record)


def test_key_records_revoked_wrong_hash_wrong_type_and_services():
    keys = signers()
    signed = sign(crlf(HEADS[0] + "\nHi\n"), keys.rsa)
    assert dkimfast.parse_key("v=DKIM1; k=rsa; p=") == "key revoked (empty p=)"
    assert by_fast(signed, keys.rsa.record + "; h=sha1") == (
        "permerror",
        "key h= does not allow sha256",
    )
    assert by_fast(signed, keys.rsa.record + "; h=sha1:sha256") == ("pass", "")
    assert by_fast(signed, keys.rsa.record + "; s=email") == ("pass", "")
    assert by_fast(signed, keys.ed.record) == ("permerror", "key of type ed25519 for a=rsa-sha256")
    assert dkimfast.parse_key(keys.rsa.record + "; s=tlsrpt") is None  # dkimpy's case
    assert dkimfast.parse_key("v=DKIM2; " + keys.rsa.record[9:]) is None
    assert dkimfast.parse_key(keys.rsa.record) is dkimfast.parse_key(keys.rsa.record)  # cached


# -- wired into verify_dkim ---------------------------------------------------------------


def _answers(*keys: DkimKey, record: str | None = None) -> KeyAnswers:
    return KeyAnswers({k.name: record or k.record for k in keys})


def _headers(content: bytes) -> list[tuple[str, str]]:
    fields, _ = _lines(content)
    out = []
    for f in fields:
        name, _, value = f.decode().partition(":")
        out.append((name, value.replace("\r\n", "").strip()))
    return out


def test_verify_dkim_takes_the_fast_path_for_common_signatures(monkeypatch):
    keys = signers()
    content = sign(sign(crlf(HEADS[1] + "\nHi\n"), keys.rsa), keys.ed, canon=(b"simple", b"simple"))

    def no_dkimpy(*args: object, **kwargs: object) -> None:
        raise AssertionError("dkimpy was asked")

    monkeypatch.setattr(dkim, "DKIM", no_dkimpy)  # the module verify.py calls
    out = verify_dkim(content, _headers(content), _answers(keys.rsa, keys.ed), DkimLimits())
    assert [(o.algorithm, o.result) for o in out] == [
        ("ed25519-sha256", "pass"),
        ("rsa-sha256", "pass"),
    ]
    small = verify_dkim(
        content, _headers(content), _answers(keys.rsa, keys.ed), DkimLimits(min_key_bits=2048)
    )
    assert [o.result for o in small] == ["pass", "policy"]


def test_what_the_fast_path_does_not_handle_is_left_to_dkimpy():
    keys = signers()
    content = crlf(HEADS[0] + "\nHi\n")
    sha1 = sign(content, dataclasses.replace(keys.rsa, algorithm="rsa-sha1"))
    assert by_fast(sha1, keys.rsa.record) is None
    out = verify_dkim(sha1, _headers(sha1), _answers(keys.rsa), DkimLimits())
    assert [o.result for o in out] == ["pass"]  # dkimpy's answer
    unknown_type = "v=DKIM1; k=dsa; p=" + keys.rsa.record.rpartition("p=")[2]
    assert dkimfast.parse_key(unknown_type) is None
    signed = sign(content, keys.rsa)
    out = verify_dkim(
        signed, _headers(signed), _answers(keys.rsa, record=unknown_type), DkimLimits()
    )
    assert [o.result for o in out] == ["permerror"]  # dkimpy's: unknown k=
    bare_lf = signed.replace(b"Hi\r\n", b"Hi\n")
    assert dkimfast.parse_message(bare_lf) is None


# -- property: any small message, any canonicalisation, any single edit ------------------

_FIELD_TEXT = st.lists(
    st.sampled_from(["a", "b", " ", "  ", "\t", "\r\n ", "\r\n\t", "x y"]), max_size=12
)
_TEXT = st.lists(st.sampled_from(["a", "b", " ", "  ", "\t", "\r\n", "\r\n ", "x y"]), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=_FIELD_TEXT,
    body=_TEXT,
    canon=st.sampled_from(CANONS),
    ed=st.booleans(),
    length=st.booleans(),
    edit=st.sampled_from(sorted(MUTATIONS)),
)
def test_property_fast_path_agrees_with_dkimpy(subject, body, canon, ed, length, edit):
    keys = signers()
    key = keys.ed if ed else keys.rsa
    value = "".join(subject).replace("\r\n", "\n")
    original = crlf(
        f"From: a@example.org\nTo: b@example.test\nSubject: hello {value}\n\n"
        + "".join(body).replace("\r\n", "\n")
    )
    signed = sign(original, key, canon=canon, headers=(b"from", b"subject"), length=length)
    altered = MUTATIONS[edit](signed)
    got = by_fast(altered, key.record)
    assert got is not None
    assert (got[0] == "pass") == by_dkimpy(altered, key.record), got


_PIECES = [b"b", b"=", b";", b" ", b"\r\n", b"\n", b"\t", b"a", b"Z", b"+", b"/", b"0", b"bh", b"-"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=16))
def test_property_b_is_emptied_exactly_as_dkimpy_empties_it(pieces):
    value = b"".join(pieces)
    assert dkimfast._empty_b(value) == dkim.RE_BTAG.sub(rb"\1", value)


_TAG_PIECES = [b"a", b"b", b"h", b"1", b"_", b"=", b";", b" ", b"\t", b"\r\n ", b"-", b"\xc3\xa9"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_TAG_PIECES), max_size=16))
def test_property_tag_lists_read_as_dkimpy_reads_them(pieces):
    text = b"".join(pieces)
    try:
        expected: dict[bytes, bytes] | None = dkim.util.parse_tag_value(text)
    except dkim.util.InvalidTagValueList:
        expected = None
    assert dkimfast.tag_list(text) == expected


_HEAD_PIECES = [b"From", b"From ", b"To", b":", b" ", b"\t", b"\r\n", b"\r\n ", b"x", b"\r", b"a b"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_HEAD_PIECES), max_size=16))
def test_property_the_one_split_reads_header_sections_as_the_line_reader_does(pieces):
    """parse_message's split at unfolded line ends, or its line-by-line reading:
    the same fields (or the same refusal) for any header section."""
    head = b"".join(pieces)
    if (
        b"\n" in head.replace(b"\r\n", b"")
        or b"\r\n\r\n" in head + b"\r\n"
        or head.startswith(b"\r\n")
    ):
        return  # a bare LF or an empty line: not a header section parse_message would split this way
    parsed = dkimfast.parse_message(head + b"\r\n\r\nbody\r\n")
    by_line = dkimfast._fields_by_line(head + b"\r\n")
    assert (parsed.headers if parsed is not None else None) == by_line


_WSP_PIECES = [b"a", b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b"\r", b"\x0b", b"\x0c", b":", b"b c"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_WSP_PIECES), max_size=14))
def test_property_relaxed_header_canonicalisation_is_rfc_6376_3_4_2(pieces):
    value = b"".join(pieces) + b"\r\n"
    unfolded = value.replace(b"\r\n", b"")
    expected = b"subject:" + dkimfast._WSP_RUN.sub(b" ", unfolded).strip() + b"\r\n"
    assert dkimfast._canonical(b"Subject", value, True) == expected


@pytest.mark.parametrize(
    "text, decoded",
    [
        (b"QUJD", b"ABC"),
        (b"QU JD\r\n\t", b"ABC"),  # FWS inside b= and bh= is ignored (§3.5)
        (b"QUI=", b"AB"),
        (b"QQ==", b"A"),
        (b"QUJD====", None),  # strict decoding alone would take it
        (b"Q===", None),
        (b"QUJD=", None),
        (b"QU=D", None),
        (b"QU-D", None),  # base64url is not base64
        (b"=QUJ", None),
        (b"QUI=QUJD", None),
        (b"", None),
        (b"abc", None),
    ],
)
def test_base64_values_are_read_strictly(text, decoded):
    assert dkimfast._base64(text) == decoded
