"""From: header ownership for authenticated submission."""

from pigeon.policy.submission import check_from_header, from_addresses
from pigeon.proto import reply as R

OWNED = frozenset({"alice@example.test", "a@example.test"})
HEAD = (
    b'Received: from x\r\n\tby y\r\nFrom: "Alice, A." <Alice@Example.TEST>\r\n'
    b"Subject: hi\r\n\r\nFrom: not-a-header@evil.example\r\n"
)


def test_addresses_from_the_header_section_only():
    assert from_addresses(HEAD) == ["alice@example.test"]


def test_owned_passes_and_foreign_is_refused():
    assert check_from_header(HEAD, OWNED) is None
    forged = b"From: a@example.test, boss@example.test\r\n\r\nbody"
    assert check_from_header(forged, OWNED) is R.FROM_NOT_OWNED


def test_no_from_header_is_left_to_the_envelope_check():
    assert check_from_header(b"Subject: x\r\n\r\n", OWNED) is None


def test_folded_from_header():
    head = b"From: Alice\r\n <alice@example.test>\r\nTo: x\r\n\r\n"
    assert from_addresses(head) == ["alice@example.test"]


def _check(from_lines: bytes, *, before: bytes = b"") -> R.Reply | None:
    return check_from_header(
        b"Received: from x\r\n" + before + from_lines + b"Subject: s\r\n\r\nbody\r\n", OWNED
    )


def test_from_after_64_kib_of_other_fields_is_seen():
    padding = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"p" * 70) for i in range(1000))
    assert len(padding) > 65536
    assert _check(b"From: boss@evil.example\r\n", before=padding) is R.FROM_NOT_OWNED
    assert _check(b"From: alice@example.test\r\n", before=padding) is None


def test_tolerant_field_names():
    for line in (
        b"From : boss@evil.example\r\n",
        b"From\t: boss@evil.example\r\n",
        b"FROM: boss@evil.example\r\n",
        b"from:boss@evil.example\r\n",
    ):
        assert _check(line) is R.FROM_NOT_OWNED, line
    assert _check(b"From : Alice <alice@example.test>\r\n") is None


def test_every_from_field_counts():
    assert _check(b"From: alice@example.test\r\nFrom: boss@evil.example\r\n") is R.FROM_NOT_OWNED
    assert _check(b"From: alice@example.test\r\nfrom : a@example.test\r\n") is None


def test_folded_fields():
    assert (
        _check(b"From: Alice\r\n <alice@example.test>,\r\n\tboss@evil.example\r\n")
        is R.FROM_NOT_OWNED
    )
    assert _check(b"From:\r\n Alice\r\n <alice@example.test>\r\n") is None


def test_group_syntax():
    assert _check(b"From: team: alice@example.test, boss@evil.example;\r\n") is R.FROM_NOT_OWNED
    assert _check(b"From: team: alice@example.test, a@example.test;\r\n") is None
    assert _check(b"From: undisclosed-senders:;\r\n") is R.FROM_NOT_OWNED  # nothing owned


def test_encoded_words():
    # An owned address with an encoded display name is fine...
    assert _check(b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>\r\n") is None
    # ...but a display name that a client shows as another address is not.
    assert (
        _check(b"From: =?utf-8?q?ceo=40bank=2Eexample?= <alice@example.test>\r\n")
        is R.FROM_NOT_OWNED
    )
    assert _check(b"From: =?utf-8?b?Ym9zc0BldmlsLmV4YW1wbGU=?=\r\n") is R.FROM_NOT_OWNED


def test_case_of_the_address_does_not_matter():
    assert _check(b"From: ALICE@EXAMPLE.TEST\r\n") is None


def test_from_without_any_address_is_refused():
    assert _check(b"From: just a name\r\n") is R.FROM_NOT_OWNED
    assert _check(b"From:\r\n") is R.FROM_NOT_OWNED
