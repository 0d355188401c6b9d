"""TLS for the SMTP listeners: certificates, the SSLContext, reloads (RFC 3207, RFC 8314).

Contract:
  * `TlsProvider.create(config)` is called once at start-up, before any
    listener is bound. Without `tls.cert_file`/`tls.key_file` it uses a
    self-signed certificate in `<data_dir>/tls/` and makes one (with the
    `cryptography` package, RSA 2048, valid ten years, for the configured
    hostname) if there is none yet, saying so in the log.
  * Rule 1: a certificate or key that cannot be read, does not parse, is
    expired or not yet valid, or does not match its key raises `TlsError`
    whose message names the file. Start-up then fails (exit 78): pigeon
    never runs with a certificate it knows to be broken.
  * The context: server side, TLS 1.2 or newer (`tls.min_version`), the TLS
    1.2 cipher list `tls.ciphers` (TLS 1.3 suites are OpenSSL's), no
    compression, no session tickets renegotiation tricks: OpenSSL defaults
    otherwise. Client certificates are not requested.
  * `reload()` (SIGHUP) builds a new context from the same files; on success
    new handshakes use it and live sessions keep theirs (nothing is dropped);
    on failure the error is logged and the old context stays.
  * `tls_info(ssl_object)` turns a finished handshake into the sans-IO
    `TlsInfo` (version, cipher, bits) for the session and Received:.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from pigeon.config.schema import Config, TlsConfig
from pigeon.proto.events import TlsInfo

log = logging.getLogger("pigeon.tls")

SELF_SIGNED_DIR = "tls"
SELF_SIGNED_CERT = "selfsigned-cert.pem"
SELF_SIGNED_KEY = "selfsigned-key.pem"


class TlsError(Exception):
    """A certificate problem found at start-up or reload; the message names the file."""


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    not_after: datetime.datetime
    self_signed: bool


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    hostname: str,
    now: datetime.datetime | None = None,
    days: int = 3650,
) -> None:
    """Write a new self-signed certificate and key (key file mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = now or datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Explicit modes whatever the umask: the key is secret, the certificate is not.
    for path, mode, data in (
        (
            key_path,
            0o600,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
        (cert_path, 0o644, cert.public_bytes(serialization.Encoding.PEM)),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def check_certificate(cert_path: Path, now: datetime.datetime | None = None) -> CertificateSummary:
    """Read and date-check the leaf certificate of a PEM chain; TlsError names the file."""
    from cryptography import x509

    try:
        data = Path(cert_path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{cert_path}: cannot read the certificate: {exc.strerror or exc}") from None
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError as exc:
        raise TlsError(f"{cert_path}: not a PEM certificate ({exc})") from None
    now = now or datetime.datetime.now(datetime.UTC)
    not_after, not_before = _validity(cert)
    if not_after < now:
        raise TlsError(f"{cert_path}: the certificate expired on {not_after:%Y-%m-%d %H:%M} UTC")
    if not_before > now:
        raise TlsError(
            f"{cert_path}: the certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC"
        )
    return CertificateSummary(cert.subject.rfc4514_string(), not_after, cert.issuer == cert.subject)


def _validity(cert) -> tuple[datetime.datetime, datetime.datetime]:
    if hasattr(cert, "not_valid_after_utc"):  # cryptography >= 42
        return cert.not_valid_after_utc, cert.not_valid_before_utc
    utc = datetime.UTC  # 41: naive datetimes in UTC
    return cert.not_valid_after.replace(tzinfo=utc), cert.not_valid_before.replace(tzinfo=utc)


def build_context(settings: TlsConfig, cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """The server SSLContext; TlsError names the file or key at fault."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.set_ciphers(settings.ciphers)
    except ssl.SSLError:
        raise TlsError(f"tls.ciphers: no usable cipher in {settings.ciphers!r}") from None
    try:
        Path(key_path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{key_path}: cannot read the private key: {exc.strerror or exc}") from None
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc.reason) or "mismatch" in str(exc).lower():
            raise TlsError(
                f"{key_path}: the private key does not match the certificate {cert_path}"
            ) from None
        raise TlsError(
            f"{key_path}: cannot load the key/certificate pair ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TlsError(f"{cert_path}: {exc.strerror or exc}") from None
    return ctx


class TlsProvider:
    """Holds the current server SSLContext; see the module contract."""

    def __init__(self, settings: TlsConfig, cert_path: Path, key_path: Path) -> None:
        self.settings = settings
        self.cert_path = cert_path
        self.key_path = key_path
        self.summary = check_certificate(cert_path)
        self._context = build_context(settings, cert_path, key_path)

    @classmethod
    def create(cls, config: Config) -> TlsProvider:
        tls = config.tls
        if tls.cert_file is not None and tls.key_file is not None:
            return cls(tls, tls.cert_file, tls.key_file)
        directory = config.data_dir / SELF_SIGNED_DIR
        cert, key = directory / SELF_SIGNED_CERT, directory / SELF_SIGNED_KEY
        if not cert.exists() or not key.exists():
            try:
                generate_self_signed(cert, key, config.hostname)
            except OSError as exc:
                raise TlsError(
                    f"{directory}: cannot write a self-signed certificate: {exc.strerror or exc}"
                ) from None
            log.warning(
                "generated a self-signed certificate for %s in %s (clients will not "
                "trust it: set tls.cert_file and tls.key_file for production)",
                config.hostname,
                cert,
            )
        return cls(tls, cert, key)

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    def reload(self) -> bool:
        """Re-read the certificate files (SIGHUP). False (and a log line) if they are broken."""
        try:
            summary = check_certificate(self.cert_path)
            context = build_context(self.settings, self.cert_path, self.key_path)
        except TlsError as exc:
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return False
        self.summary, self._context = summary, context
        log.info(
            "TLS certificate reloaded: %s (valid until %s)",
            summary.subject,
            summary.not_after.strftime("%Y-%m-%d"),
        )
        return True

    def describe(self) -> str:
        kind = "self-signed " if self.summary.self_signed else ""
        return (
            f"{kind}certificate {self.cert_path} for {self.summary.subject}, valid until "
            f"{self.summary.not_after:%Y-%m-%d}"
        )


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsInfo:
    if ssl_object is None:
        return TlsInfo("unknown", "unknown", 0)
    cipher = ssl_object.cipher()
    name, version, bits = cipher if cipher else ("unknown", "unknown", 0)
    return TlsInfo(ssl_object.version() or version or "unknown", name, int(bits or 0))
