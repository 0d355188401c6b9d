"""What the SMTP client needs to judge a peer's TLS: its chain, and failures as RFC 8460 words.

Contract:
  * `peer_chain(ssl_object)`: the certificates the peer sent, DER, leaf
    first (Python 3.13 and later give the whole chain; before that only the
    leaf is available, which is all DANE-EE(3) needs, RFC 7672 §3.1.1).
  * `tls_failure_type(exc)`: the RFC 8460 §4.3 result type of a failed
    handshake: certificate-host-mismatch, certificate-expired,
    certificate-not-trusted, or validation-failure for anything else.
  * `TlsCheck`: the "dane" TLS policy's check of a chain (None = accepted,
    else the reason).
  * Imports nothing of pigeon (delivery/smtpc.py imports it).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

__all__ = ["TlsCheck", "peer_chain", "tls_failure_type"]

#: The peer's certificate chain (DER, leaf first) -> None when acceptable, else why not.
TlsCheck = Callable[[list[bytes]], "str | None"]

#: OpenSSL X509_V_ERR_* codes -> RFC 8460 §4.3.2 result types.
_VERIFY_RESULTS = {62: "certificate-host-mismatch", 10: "certificate-expired"}


def peer_chain(obj: ssl.SSLObject | None) -> list[bytes]:
    """See the module contract."""
    if obj is None:
        return []
    unverified = getattr(obj, "get_unverified_chain", None)
    if unverified is not None:
        chain = unverified()
        if chain:
            return [c if isinstance(c, bytes) else c.public_bytes() for c in chain]
    leaf = obj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def tls_failure_type(exc: BaseException) -> str:
    """See the module contract."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_RESULTS.get(exc.verify_code, "certificate-not-trusted")
    return "validation-failure"
