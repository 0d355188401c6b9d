"""ClientConfig: the settings of pigeon's outbound SMTP/LMTP client, one frozen value.

Contract:
  * Pure data (CONTRIBUTING.md, rule 15): a frozen dataclass with a comment per field
    giving its default and unit; `__post_init__` validates eagerly and raises
    ValueError naming the field. The [delivery] config section (config/) is
    expected to build one of these.
  * The sans-IO session (proto/client.py) reads the protocol fields
    (helo_name, timeouts, pipelining/chunking switches, content_chunk); the
    asyncio driver (delivery/smtpc.py) and the agents (delivery/) read the rest.
  * Timeouts are in seconds and follow RFC 5321 §4.5.3.2: initial 220
    greeting 5 min, MAIL 5 min, RCPT 5 min, DATA initiation 2 min, data block
    3 min, DATA termination ("." or BDAT LAST) 10 min. RFC 5321 names no
    timeout for EHLO, STARTTLS, RSET and QUIT; the defaults are Postfix's
    (smtp_helo_timeout 300s, smtp_starttls_timeout 300s, smtp_rset_timeout 20s,
    smtp_quit_timeout 300s, shortened here to 20s as nothing depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

TlsPolicy = Literal["none", "may", "encrypt", "verify"]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    #: Name sent in EHLO/HELO/LHLO. Default "" = the agent's own_hostname.
    helo_name: str = ""
    #: Seconds to establish the TCP (or Unix socket) connection. Default 30.
    connect_timeout: float = 30.0
    #: Seconds to wait for the 220 greeting (RFC 5321 §4.5.3.2.1). Default 300.
    greeting_timeout: float = 300.0
    #: Seconds to wait for the EHLO/HELO/LHLO reply. Default 300 (Postfix).
    helo_timeout: float = 300.0
    #: Seconds for the STARTTLS reply and the TLS handshake. Default 300 (Postfix).
    starttls_timeout: float = 300.0
    #: Seconds to wait for the MAIL reply (RFC 5321 §4.5.3.2.2). Default 300.
    mail_timeout: float = 300.0
    #: Seconds to wait for each RCPT reply (RFC 5321 §4.5.3.2.3). Default 300.
    rcpt_timeout: float = 300.0
    #: Seconds to wait for the 354 after DATA (RFC 5321 §4.5.3.2.4). Default 120.
    data_init_timeout: float = 120.0
    #: Seconds one write of content may take (RFC 5321 §4.5.3.2.5). Default 180.
    data_block_timeout: float = 180.0
    #: Seconds to wait for the reply to the final "." / BDAT LAST
    #: (RFC 5321 §4.5.3.2.6). Default 600.
    data_done_timeout: float = 600.0
    #: Seconds to wait for the RSET reply. Default 20 (Postfix smtp_rset_timeout).
    rset_timeout: float = 20.0
    #: Seconds to wait for the QUIT reply. Default 20.
    quit_timeout: float = 20.0
    #: STARTTLS policy (RFC 3207): "none" never; "may" (default) when offered,
    #: certificate not verified, and after a failed handshake the same host is
    #: tried once more in plaintext (as Postfix's opportunistic TLS does);
    #: "encrypt" required, not verified; "verify" required and the
    #: certificate must match the host name (system CAs or `tls_ca_file`).
    tls: TlsPolicy = "may"
    #: PEM file of trusted CAs for tls="verify". Default None = system store.
    tls_ca_file: str | None = None
    #: Use PIPELINING (RFC 2920) when offered. Default True.
    pipelining: bool = True
    #: Use BDAT (CHUNKING, RFC 3030) when offered, instead of DATA. Default True.
    chunking: bool = True
    #: Octets read from the content file and sent per write / BDAT chunk. Default 64 KiB.
    content_chunk: int = 65536
    #: Recipients per transaction; more go into further transactions over the
    #: same connection (RFC 5321 §4.5.3.1.8 requires servers to take 100). Default 50.
    max_recipients_per_transaction: int = 50
    #: Addresses (MX candidates) tried per delivery attempt. Default 5
    #: (Postfix smtp_mx_address_limit).
    max_candidates: int = 5
    #: Idle connections kept per destination for reuse. 0 disables the cache. Default 1.
    max_idle_per_destination: int = 1
    #: Seconds an idle connection is kept for reuse. Default 5.
    idle_timeout: float = 5.0
    #: Default TCP port for SMTP when the next hop names none. Default 25.
    smtp_port: int = 25
    #: Default TCP port for LMTP when the next hop names none. Default 24.
    lmtp_port: int = 24

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_timeout") and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{f.name} must be a positive number of seconds, got {value!r}")
        if self.tls not in ("none", "may", "encrypt", "verify"):
            raise ValueError(f"tls must be none, may, encrypt or verify, got {self.tls!r}")
        if self.content_chunk < 512:
            raise ValueError("content_chunk must be at least 512 octets")
        if self.max_recipients_per_transaction < 1:
            raise ValueError("max_recipients_per_transaction must be at least 1")
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")
        if self.max_idle_per_destination < 0:
            raise ValueError("max_idle_per_destination must be >= 0")
        for name in ("smtp_port", "lmtp_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ValueError(f"{name} must be a TCP port (1-65535)")
