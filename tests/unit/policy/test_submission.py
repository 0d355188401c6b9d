"""From: header ownership for authenticated submission."""
from pigeon.policy.submission import check_from_header, from_addresses
from pigeon.proto import reply as R

OWNED = frozenset({"alice@example.test", "a@example.test"})
HEAD = (b"Received: from x\r\n\tby y\r\nFrom: \"Alice, A.\" <Alice@Example.TEST>\r\n"
        b"Subject: hi\r\n\r\nFrom: not-a-header@evil.example\r\n")


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
