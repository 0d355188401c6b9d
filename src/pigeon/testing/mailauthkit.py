"""Keys, DNS zones and signed messages for the mail authentication tests.

Contract:
  * `DkimKey.rsa(selector, domain, bits)` and `DkimKey.ed25519(selector,
    domain)` make a fresh key pair (cryptography, PyNaCl); `.record` is
    the TXT record to publish (RFC 6376 §3.6.1, RFC 8463 §4.2) and
    `.zone_line(origin)` that record as a zone-file line relative to
    `origin`; `.sign(message)` signs with dkimpy (an independent
    implementation of the signer side) and returns the message with the
    DKIM-Signature on top.
  * `arc_seal(message, key, authserv_id)` adds an ARC set (dkimpy) the way
    a forwarder (a mailing list) would.
  * `txt(text)` quotes a TXT value for a zone file, cut into strings of at
    most 255 octets (RFC 1035 §3.3.14).
  * `message(...)` builds a small CRLF message.
  Test helpers only: never used by production code.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["DkimKey", "arc_seal", "message", "txt"]


def txt(text: str) -> str:
    """A TXT value for a zone file (module contract)."""
    parts = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + p.replace('"', '\\"') + '"' for p in parts)


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    private: bytes  # what dkimpy's sign() takes
    record: str  # the TXT record

    @classmethod
    def rsa(cls, selector: str, domain: str, bits: int = 2048) -> DkimKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
        return cls(selector, domain, "rsa-sha256", private, record)

    @classmethod
    def ed25519(cls, selector: str, domain: str) -> DkimKey:
        key = nacl.signing.SigningKey.generate()
        private = base64.b64encode(bytes(key))
        public = base64.b64encode(bytes(key.verify_key)).decode()
        return cls(selector, domain, "ed25519-sha256", private, f"v=DKIM1; k=ed25519; p={public}")

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def zone_line(self, origin: str) -> str:
        owner = self.name.removesuffix("." + origin)
        return f"{owner} TXT {txt(self.record)}\n"

    def sign(
        self,
        content: bytes,
        *,
        domain: str | None = None,
        headers: tuple[str, ...] = ("from", "to", "subject", "date", "message-id"),
    ) -> bytes:
        signature = dkim.sign(
            content,
            self.selector.encode(),
            (domain or self.domain).encode(),
            self.private,
            signature_algorithm=self.algorithm.encode(),
            include_headers=[h.encode() for h in headers],
        )
        return bytes(signature) + content


def arc_seal(content: bytes, key: DkimKey, authserv_id: str) -> bytes:
    """`content` with one more ARC set by `key` (module contract); the message
    needs an Authentication-Results field of `authserv_id` (RFC 8617 §4.1.1)."""
    fields = dkim.arc_sign(
        content,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        authserv_id.encode(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return b"".join(fields) + content


def message(
    sender: str = "alice@example.org",
    to: str = "bob@example.test",
    subject: str = "hello",
    body: str = "Hi Bob.\r\n",
    extra: str = "",
) -> bytes:
    """A small CRLF message (module contract)."""
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Date: Sun, 06 Dec 2026 07:00:00 +0000\r\nMessage-ID: <1@{sender.rpartition('@')[2]}>\r\n"
        f"{extra}\r\n{body}"
    ).encode()
