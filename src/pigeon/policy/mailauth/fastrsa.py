"""dkimpy's RSA step done by OpenSSL (through `cryptography`), and its key parsing cached.

dkimpy decides everything about a DKIM or ARC signature (tags,
canonicalisation, which header fields, the hashes); its last step, the
RSASSA-PKCS1-v1_5 check of RFC 8017 §8.2.2, is written in pure Python
(`dkim.crypto`: Python's `pow` and byte loops), and it parses the key
record's ASN.1 in Python again for every signature. Measured on this
project's 2-core machine with a 1 KB message (bench/mail_auth_cost.py):
about half of a signature's verification time, and the inbound rate with
DKIM on fell to under half of the rate with it off (docs/benchmarks.md,
"Issue 13").

Contract:
  * `install()` (idempotent, called when `policy.mailauth.verify` is
    imported) replaces two names in the `dkim` module:
      - `RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)`: the same
        question answered by OpenSSL (`RSAPublicKey.verify`, PKCS#1 v1.5
        padding, the hash given as a digest: `Prehashed`). Same inputs,
        same answer: True for a valid signature, False otherwise; a
        signature longer than the modulus is False, as in dkimpy (whose
        `rsa_encrypt` then yields a different block).
      - `parse_public_key(der)`: dkimpy's own parser behind an LRU cache
        keyed by the DER bytes (a key record is the same bytes for every
        message of a sender). The returned dict is shared: dkimpy only
        reads it.
  * No cryptography is written here: OpenSSL checks the signature, dkimpy
    does the rest. tests/unit/policy/mailauth/test_fastrsa.py checks the
    replacement against dkimpy's own function on valid, altered and
    wrong-key signatures.
  * Signing (`pigeon.signing`) is not affected: dkimpy signs RSA with
    `RSASSA_PKCS1_v1_5_sign`, which stays as it is.
"""

from __future__ import annotations

import functools
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = ["install", "rsa_verify"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_ORIGINAL_VERIFY = dkim.RSASSA_PKCS1_v1_5_verify
_ORIGINAL_PARSE = dkim.parse_public_key


@functools.lru_cache(maxsize=256)
def _public_key(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def rsa_verify(digest: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's `RSASSA_PKCS1_v1_5_verify`, by OpenSSL (module contract)."""
    algorithm = _HASHES.get(str(digest.name).lower())
    if algorithm is None:  # dkimpy only hashes with sha1/sha256; anything else is its own path
        return bool(_ORIGINAL_VERIFY(digest, signature, public_key))
    try:
        key = _public_key(public_key["modulus"], public_key["publicExponent"])
        key.verify(signature, digest.digest(), padding.PKCS1v15(), Prehashed(algorithm()))
    except (InvalidSignature, ValueError):
        return False
    return True


_cached_parse = functools.lru_cache(maxsize=256)(_ORIGINAL_PARSE)


def install() -> None:
    """Put `rsa_verify` and the cached key parser into dkimpy (idempotent)."""
    dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
    dkim.parse_public_key = _cached_parse
