"""What the SMTP client needs to judge a peer's TLS: its chain, and failures as RFC 8460 words.

Contract:
  * `peer_chain(ssl_object)`: the certificates the peer sent, DER, leaf
    first. Python 3.13 has `SSLObject.get_unverified_chain()`; Python 3.10
    to 3.12 have it only on the C-level object inside (`_sslobj`), which is
    used when present; otherwise the leaf alone (getpeercert): all
    DANE-EE(3) needs (RFC 7672 §3.1.1), while DANE-TA(2) then matches only
    a self-issued leaf.
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
    unverified = getattr(obj, "get_unverified_chain", None)  # Python 3.13+
    if unverified is None:  # Python 3.10-3.12: on the C-level object only
        unverified = getattr(getattr(obj, "_sslobj", None), "get_unverified_chain", None)
    if unverified is not None:
        chain = unverified()
        if chain:
            return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain]
    leaf = obj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def tls_failure_type(exc: BaseException) -> str:
    """See the module contract."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_RESULTS.get(exc.verify_code, "certificate-not-trusted")
    return "validation-failure"


_DER = 2  # _ssl.ENCODING_DER: the format argument of the C-level Certificate.public_bytes
