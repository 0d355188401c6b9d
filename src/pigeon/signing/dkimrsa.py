"""dkimpy's RSA steps done by OpenSSL (through `cryptography`), and its key parsing cached.

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
  * `install()` (idempotent, called when `policy.mailauth.verify` or
    `signing.signer` is imported) replaces three names in the `dkim`
    module:
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
    does the rest. tests/unit/signing/test_dkimrsa.py checks the
    replacement against dkimpy's own function on valid, altered and
    wrong-key signatures.
  * `RSASSA_PKCS1_v1_5_sign(hash, private_key)` is replaced too, for the
    signer (pigeon.signing) and the ARC sealer: dkimpy's pure-Python
    private-key operation took about 9 ms per rsa-sha256 signature here,
    holding the GIL (so the event loop) all along; OpenSSL's takes well
    under one. The key is dkimpy's parsed dict (RFC 8017 §3.2's numbers),
    made an OpenSSL key once and cached by its modulus.
"""

from __future__ import annotations

import functools
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = ["install", "rsa_sign", "rsa_verify"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_ORIGINAL_VERIFY = dkim.RSASSA_PKCS1_v1_5_verify
_ORIGINAL_PARSE = dkim.parse_public_key
_ORIGINAL_SIGN = dkim.RSASSA_PKCS1_v1_5_sign


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


# dkimpy's names of the RFC 8017 §3.2 numbers, in RSAPrivateNumbers' order (below).
_PRIVATE_NUMBERS = (
    "modulus",
    "publicExponent",
    "privateExponent",
    "prime1",
    "prime2",
    "exponent1",
    "exponent2",
    "coefficient",
)


@functools.lru_cache(maxsize=64)
def _private_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    public = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def rsa_sign(digest: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign`, by OpenSSL (module contract)."""
    algorithm = _HASHES.get(str(digest.name).lower())
    if algorithm is None:
        return bytes(_ORIGINAL_SIGN(digest, private_key))
    key = _private_key(tuple(private_key[name] for name in _PRIVATE_NUMBERS))
    return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm()))


_cached_parse = functools.lru_cache(maxsize=256)(_ORIGINAL_PARSE)


def install() -> None:
    """Put `rsa_verify`, `rsa_sign` and the cached key parser into dkimpy (idempotent)."""
    dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
    dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign
    dkim.parse_public_key = _cached_parse
