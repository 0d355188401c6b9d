"""Account password hashing with argon2id (RFC 9106) via argon2-cffi.

Contract:
  * `hash_password(password)` returns a PHC string ("$argon2id$v=19$m=...").
    Parameters are argon2-cffi's defaults (RFC 9106 §4 second recommended
    option: t=3, m=64 MiB, p=4); they are stored in the hash, so raising them
    later keeps old hashes verifiable.
  * `verify_password(hash, password)` is True or False; it never raises for a
    wrong password or a malformed hash (a malformed hash is logged by the
    caller as a store problem, the client only sees 535).
  * Verification costs tens of milliseconds and 64 MiB: callers in the event
    loop run it in a small thread pool (pigeon.auth.service).
  * `burn_time(password)` verifies against a fixed dummy hash so that an
    unknown user costs as much as a known one (no user-name probing by timing).
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id is argon2-cffi's default type


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    try:
        return _HASHER.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("pigeon dummy password")


def burn_time(password: str) -> None:
    """Spend the time of one verification (for unknown users)."""
    verify_password(_dummy_hash(), password)
