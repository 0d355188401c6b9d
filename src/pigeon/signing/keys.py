"""DKIM keys on disk: made by `pigeon dkim keygen`, read at start-up.

Contract:
  * Layout: `<key_dir>/<domain>/<selector>-rsa.key` (RSA 2048, PEM, PKCS#1,
    as opendkim-genkey writes it) and `<key_dir>/<domain>/<selector>-ed25519.key`
    (the 32-octet Ed25519 seed in base64 on one line, as dkimpy's dknewkey
    and OpenDKIM read it). `key_dir` is `[dkim] key_dir` or `<data_dir>/dkim`
    (`Config.dkim_key_dir`). Directories are 0700, files 0600; made by root
    for a `user` that pigeon becomes, they are given to that user.
  * One *selector* names a key pair: the RSA key is published at
    `<selector>-rsa._domainkey.<domain>` and the Ed25519 key at
    `<selector>-ed25519._domainkey.<domain>` (RFC 8463 §4: two signatures,
    one per algorithm, each with its own key record). `dns_records()` gives
    both TXT records (RFC 6376 §3.6.1: `v=DKIM1; k=rsa; p=` the DER
    SubjectPublicKeyInfo in base64; RFC 8463 §4.2: `k=ed25519; p=` the raw
    32-octet public key in base64).
  * `generate(key_dir, domain, selector)` makes both keys with
    `cryptography` (no hand-written crypto) and refuses to overwrite a
    selector that exists (`KeyProblem`).
  * `load_keys(key_dir, dkim)` returns the `KeyPair` to sign with for every
    domain that has keys: the selector of `[dkim.domains."D"] selector`,
    else the newest pair in the domain's directory (the RSA key file's
    modification time; the name breaks a tie). A configured selector
    without its two files, a file that cannot be read or is no key, or half
    a pair is a `ConfigError` naming the key and the path (promise 2: the
    start is refused). A missing key_dir means no domain signs.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pigeon.config._checks import ConfigError, domain_problem
from pigeon.config._dkim import selector_problem
from pigeon.config.dkim import DkimConfig

__all__ = ["KeyPair", "KeyProblem", "RSA_BITS", "generate", "load_keys", "read_pair", "selectors"]

RSA_BITS = 2048  # RFC 8301 §3.2: at least 1024, 2048 recommended
_RSA, _ED = "-rsa.key", "-ed25519.key"


class KeyProblem(Exception):
    """A key cannot be made or read; the message names the path."""


@dataclass(frozen=True)
class KeyPair:
    """One selector's two private keys for one domain."""

    domain: str
    selector: str
    rsa_pem: bytes  # PEM private key (what dkimpy's rsa-sha256 signing takes)
    ed25519_seed: bytes  # base64 of the 32-octet seed (what dkimpy's ed25519-sha256 takes)

    @property
    def rsa_selector(self) -> str:
        return f"{self.selector}-rsa"

    @property
    def ed25519_selector(self) -> str:
        return f"{self.selector}-ed25519"

    def dns_records(self) -> list[tuple[str, str]]:
        """(owner name, TXT value) for both keys (module contract)."""
        rsa_key = serialization.load_pem_private_key(self.rsa_pem, password=None)
        spki = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        seed = base64.b64decode(self.ed25519_seed)
        raw = (
            ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return [
            (
                f"{self.rsa_selector}._domainkey.{self.domain}",
                f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}",
            ),
            (
                f"{self.ed25519_selector}._domainkey.{self.domain}",
                f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}",
            ),
        ]


def generate(
    key_dir: Path, domain: str, selector: str, *, owner: tuple[int, int] | None = None
) -> KeyPair:
    """Make and write a new key pair (module contract); `owner`: (uid, gid) to give it to.
    `key_dir` is made if missing, not its parent."""
    if (problem := domain_problem(domain)) is not None:
        raise KeyProblem(f"{domain!r} is not a domain name ({problem})")
    if (problem := selector_problem(selector)) is not None:
        raise KeyProblem(problem)
    directory = key_dir / domain
    rsa_path, ed_path = directory / (selector + _RSA), directory / (selector + _ED)
    for path in (rsa_path, ed_path):
        if path.exists():
            raise KeyProblem(f"{path} exists: choose another selector (--selector)")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ed_text = base64.b64encode(seed)
    uid, gid = owner if owner is not None else (-1, -1)
    try:
        for made in (key_dir, directory):
            made.mkdir(mode=0o700, exist_ok=True)
            os.chmod(made, 0o700)  # private keys: nobody else may even list them
            if uid >= 0:
                os.chown(made, uid, gid)
        for path, data in ((rsa_path, rsa_pem), (ed_path, ed_text + b"\n")):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                if uid >= 0:
                    os.fchown(fd, uid, gid)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise KeyProblem(f"cannot write {exc.filename or directory}: {exc.strerror}") from None
    return KeyPair(domain, selector, rsa_pem, ed_text)


def selectors(directory: Path) -> list[str]:
    """The selectors that have an RSA key in `directory`, newest first."""
    found = []
    for path in directory.glob("*" + _RSA):
        found.append((path.stat().st_mtime, path.name[: -len(_RSA)]))
    return [name for _, name in sorted(found, reverse=True)]


def read_pair(directory: Path, domain: str, selector: str) -> KeyPair:
    """The pair of `selector` in `directory`; KeyProblem naming the path."""
    rsa_path, ed_path = directory / (selector + _RSA), directory / (selector + _ED)
    texts = []
    for path in (rsa_path, ed_path):
        try:
            texts.append(path.read_bytes())
        except OSError as exc:
            raise KeyProblem(f"cannot read {path}: {exc.strerror}") from None
    rsa_pem, ed_text = texts[0], texts[1].strip()
    try:
        key = serialization.load_pem_private_key(rsa_pem, password=None)
    except (ValueError, TypeError):
        raise KeyProblem(f"{rsa_path} is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 1024:
        raise KeyProblem(f"{rsa_path} is not an RSA key of 1024 bits or more (RFC 8301 §3.2)")
    try:
        valid = len(base64.b64decode(ed_text, validate=True)) == 32
    except ValueError:
        valid = False
    if not valid:
        raise KeyProblem(f"{ed_path} is not an Ed25519 seed (32 octets in base64)")
    return KeyPair(domain, selector, rsa_pem, ed_text)


def load_keys(key_dir: Path, dkim: DkimConfig) -> dict[str, KeyPair]:
    """domain -> the pair it signs with (module contract); ConfigError naming key and path."""
    pairs: dict[str, KeyPair] = {}
    try:
        domains = (
            sorted(p.name for p in key_dir.iterdir() if p.is_dir()) if key_dir.is_dir() else []
        )
    except OSError as exc:
        raise ConfigError("dkim.key_dir", f"cannot read {key_dir}: {exc.strerror}") from None
    for name, settings in dkim.domains.items():
        if settings.selector and name not in domains:
            where = f'dkim.domains."{name}".selector'
            raise ConfigError(where, f"no keys for {name} in {key_dir / name}")
    for domain in domains:
        directory = key_dir / domain
        configured = dkim.domains.get(domain)
        selector = configured.selector if configured is not None else ""
        where = f'dkim.domains."{domain}".selector' if selector else "dkim.key_dir"
        try:
            if not selector:
                newest = selectors(directory)
                if not newest:
                    continue  # an empty directory: nothing to sign with
                selector = newest[0]
            pairs[domain] = read_pair(directory, domain, selector)
        except KeyProblem as exc:
            raise ConfigError(where, str(exc)) from None
        except OSError as exc:
            raise ConfigError(where, f"cannot read {directory}: {exc.strerror}") from None
    return pairs
