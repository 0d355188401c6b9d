"""The SRS secret: configured, read from a file, or made once and kept.

Contract:
  * `srs_secrets(config)` returns the secrets of `[srs]`, the one that signs
    first: `secret` (one), else the non-empty lines of `secret_file`, else
    the one kept in `<data_dir>/srs.secret`, made at the first start from
    32 random octets (`secrets.token_urlsafe`), mode 0600, written to a
    temporary file, fsynced and linked into place, so two processes
    starting at once (workers) end with the same one secret.
  * A secret that changes invalidates every SRS address made with the old
    one: the made file is never rewritten; rotate by a `secret_file`
    listing the new secret first and the old one after it.
  * Raises OSError when the file cannot be read or made, ValueError when
    `secret_file` holds no secret: the caller (app wiring) refuses to start.
  * `srs_codec(config)` is the `SrsCodec` of `[srs]`, or None when it is off.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pigeon.config.schema import Config
from pigeon.forwarding.srs import SrsCodec

__all__ = ["SECRET_FILE", "srs_codec", "srs_secrets"]

SECRET_FILE = "srs.secret"


def srs_secrets(config: Config) -> list[bytes]:
    """The secrets of `[srs]`, the signing one first (module contract)."""
    srs = config.srs
    if srs.secret:
        return [srs.secret.encode("utf-8")]
    if srs.secret_file is not None:
        found = _lines(srs.secret_file.read_bytes())
        if not found:
            raise ValueError(f"srs.secret_file {srs.secret_file}: no secret in it")
        return found
    return _lines(_kept_secret(config.data_dir / SECRET_FILE))


def _lines(data: bytes) -> list[bytes]:
    return [line.strip() for line in data.splitlines() if line.strip()]


def _kept_secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, secrets.token_urlsafe(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a secret another process made meanwhile
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.read_bytes()


def srs_codec(config: Config) -> SrsCodec | None:
    """The codec of `[srs]`, or None when SRS is off (module contract)."""
    srs = config.srs
    if not srs.enabled:
        return None
    return SrsCodec(
        srs_secrets(config),
        srs.domain or config.hostname,
        max_age_days=srs.max_age,
        hash_length=srs.hash_length,
    )
