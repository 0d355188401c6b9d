"""SCRAM-SHA-256 primitives (RFC 5802 §3, RFC 7677) and SASLprep (RFC 4013).

Contract:
  * `derive_keys(password, salt, iterations)` computes what the server stores
    for an account: the salt, the iteration count, StoredKey = H(ClientKey)
    and ServerKey (RFC 5802 §3). The password itself is never stored; the
    keys are computed once, at `pigeon user add` / `passwd`, and are as
    sensitive as a password hash (they let their holder impersonate the
    server, not the user).
  * `check_proof(keys, auth_message, proof)` recovers ClientKey from the
    proof and compares H(ClientKey) with StoredKey in constant time.
  * `server_signature(keys, auth_message)` is the "v=" value of the final
    server message.
  * Pure functions: hashlib/hmac only, no I/O, no clock; safe to import from
    the sans-IO protocol core.
  * `saslprep` implements RFC 4013 (stringprep profile) for passwords and
    user names: mapping (B.1 to nothing, C.1.2 to space), NFKC, prohibited
    output and bidi checks. It raises ValueError for prohibited input.
"""

from __future__ import annotations

import hashlib
import hmac
import stringprep
import unicodedata
from dataclasses import dataclass

#: RFC 7677 §4: at least 4096 iterations. The client pays this cost on every
#: login, the server only at `user add`.
DEFAULT_ITERATIONS = 10_000
HASH = "sha256"


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What the server stores for SCRAM-SHA-256 (RFC 5802 §3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, HASH).digest()


def _h(data: bytes) -> bytes:
    return hashlib.new(HASH, data).digest()


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(Normalize(password), salt, i) = PBKDF2-HMAC-SHA-256 (RFC 5802 §2.2)."""
    return hashlib.pbkdf2_hmac(HASH, saslprep(password).encode("utf-8"), salt, iterations)


def derive_keys(password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS) -> ScramKeys:
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(salt, iterations, _h(client_key), _hmac(salted, b"Server Key"))


def client_proof(password: str, salt: bytes, iterations: int, auth_message: bytes) -> bytes:
    """The client side (used by tests and tools): ClientKey XOR ClientSignature."""
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    signature = _hmac(_h(client_key), auth_message)
    return bytes(a ^ b for a, b in zip(client_key, signature))


def check_proof(keys: ScramKeys, auth_message: bytes, proof: bytes) -> bool:
    signature = _hmac(keys.stored_key, auth_message)
    if len(proof) != len(signature):
        return False
    client_key = bytes(a ^ b for a, b in zip(proof, signature))
    return hmac.compare_digest(_h(client_key), keys.stored_key)


def server_signature(keys: ScramKeys, auth_message: bytes) -> bytes:
    return _hmac(keys.server_key, auth_message)


def expected_server_signature(
    password: str, salt: bytes, iterations: int, auth_message: bytes
) -> bytes:
    """The client's check of the server (tests and tools)."""
    salted = salted_password(password, salt, iterations)
    return _hmac(_hmac(salted, b"Server Key"), auth_message)


# --- SASLprep (RFC 4013) --------------------------------------------------------------

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep with unassigned code points allowed (a "stored string" check is stricter)."""
    if text.isascii() and all(" " <= c <= "~" for c in text):
        return text  # the common case: printable ASCII maps to itself
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    out = unicodedata.normalize("NFKC", mapped)
    for c in out:
        if any(check(c) for check in _PROHIBITED):
            raise ValueError("prohibited character in SASLprep input")
    rand_al = [stringprep.in_table_d1(c) for c in out]
    if any(rand_al):  # RFC 3454 §6 bidi rules
        if any(stringprep.in_table_d2(c) for c in out) or not (rand_al[0] and rand_al[-1]):
            raise ValueError("bad bidirectional text in SASLprep input")
    return out
