"""app/wiring.py `notice_signer`: our delivery reports, DKIM-signed when keys allow, never lost."""

from __future__ import annotations

import dkim

from pigeon.app.wiring import notice_signer
from pigeon.config.dkim import DEFAULT_HEADERS
from pigeon.signing.keys import generate
from pigeon.signing.signer import DkimSigner, SigningError

REPORT = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"\r\n"
    b"This is the mail system.\r\n"
)


def test_a_report_is_signed_with_the_parent_domains_keys(tmp_path):
    pair = generate(tmp_path, "example.test", "s1")
    signed = notice_signer(lambda: DkimSigner({"example.test": pair}, DEFAULT_HEADERS))(REPORT)
    assert signed.endswith(REPORT) and signed.startswith(b"DKIM-Signature: ")
    records = {name + ".": value for name, value in pair.dns_records()}
    assert dkim.DKIM(signed).verify(
        idx=0, dnsfunc=lambda name, timeout=5: records.get(name.decode(), "").encode()
    )


def test_without_keys_the_report_is_unchanged():
    assert notice_signer(lambda: None)(REPORT) == REPORT


class _Refusing(DkimSigner):
    """A signer whose key dkimpy refuses (a damaged key file read at start-up)."""

    def signatures(self, message: bytes, *, parents: bool = False) -> list[bytes]:
        raise SigningError("example.test selector s1: bad key")


def test_a_signing_error_sends_the_report_unsigned(caplog):
    assert notice_signer(lambda: _Refusing({}, DEFAULT_HEADERS))(REPORT) == REPORT
    assert "a delivery report goes unsigned" in caplog.text
