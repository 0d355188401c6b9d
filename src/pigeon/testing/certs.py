"""Certificates for tests: a CA, server certificates it issues, self-signed ones.

    ca = make_cert(["Test CA"], ca=True)
    leaf = make_cert(["mx.example.test"], issuer=ca)
    cert_path, key_path = leaf.write(tmp_path, "mx", chain=[ca])   # PEM, chain after leaf

Contract:
  * Keys are ECDSA P-256 (quick to make); certificates X.509 v3 with SHA-256
    signatures, made with `cryptography` (no hand-written crypto).
  * `names`: the first is the subject CN; all are subjectAltName dNSNames
    (none when `san=False`). A CA gets basicConstraints cA=TRUE.
  * Validity: `not_before`/`not_after` (default: 30 days ago to a year on),
    so tests can make expired or not-yet-valid certificates.
  * Never used by production code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Issued", "make_cert"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, stem: str, chain: Sequence[Issued] = ()) -> tuple[Path, Path]:
        """`<stem>.pem` (this certificate, then `chain`) and `<stem>.key` (0600)."""
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(self.pem + b"".join(c.pem for c in chain))
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def make_cert(
    names: list[str],
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    san: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate for `names`, signed by `issuer` (self-signed without one)."""
    now = dt.datetime.now(dt.UTC)
    not_after = not_after or now + dt.timedelta(days=365)
    # An expired certificate was valid for a while before it expired.
    not_before = not_before or min(now, not_after) - dt.timedelta(days=30)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san and not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return Issued(cert, key)
