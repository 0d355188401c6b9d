"""The configuration schema: frozen dataclasses, one documented field each.

Contract:
  * This module only *describes* configuration: defaults, units, meaning.
    Loading (defaults -> TOML file -> command-line overrides) and validation
    live in `pigeon.config.load`, which raises `ConfigError` naming the key.
  * Every field's comment gives its TOML key, default and unit; docs/config.md
    is the reference for users and must agree with this file.
  * The embedded defaults run a safe quick-start server: loopback only,
    local domain "localhost", no relaying for anyone.

TOML layout (all keys optional):

    hostname = "mail.example.test"
    data_dir = "./pigeon-data"
    listen = ["127.0.0.1:2525"]
    relay_networks = ["127.0.0.0/8"]
    recipient_delimiter = "+"         # alice+news@ -> alice
    aliases_file = "/etc/aliases"     # aliases(5) format, applied in every local domain

    [domains."example.test"]          # a local domain
    mailboxes = ["alice", "bob"]      # omit: any local part is accepted
    # (or, without tables: domains = ["example.test", "example.org"])

    [aliases]
    "info@example.test" = ["alice@example.test", "carol@elsewhere.example"]
    "@example.test" = "catchall@example.test"      # catch-all: only when nothing else matches

    [limits]    message_size, header_size, recipients, errors, junk_commands, hop_count, connections,
                connections_per_ip, new_mailboxes_per_hour
    [timeouts]  command, data_block, data_total, shutdown_grace, greet_pause
    [smtp]      bare_newline, eight_bit_undeclared, pipelining, chunking, smtputf8, dsn, eight_bit_mime
    [queue]     fsync, run_interval, min_backoff, max_backoff, max_lifetime, delay_warning, concurrency,
                min_free, store, node, lease, local_at_accept
    [log]       format, level, file
    [tls]       cert_file, key_file, min_version, ciphers, starttls, handshake_timeout
    [admin]     control_socket, pid_file, metrics_listen
    [console]   listen, max_body, session_idle, session_max: HTTP API, web console
    [auth]      mechanisms, smtp_listener, slow_after, failure_delay, max_failures, failure_window, lockout
    submission_listen = ["127.0.0.1:2587"]   # role submission; listen is role smtp
    submissions_listen = ["127.0.0.1:2465"]  # role submissions (implicit TLS)
    [delivery]  remote_port, dns_servers, dns_timeout, relay_host, relay_user, relay_password_file,
                helo_name, connect_timeout, command_timeout, data_block_timeout, data_done_timeout,
                tls, tls_ca_file, destination_concurrency, destination_recipients, own_addresses
    [rate_limits] [dnsbl] [greylist] [postscreen]: the abuse controls (pigeon.config.abuse)
    [reports]   dmarc, tls, from, org_name, contact, interval
    [dkim]      sign, key_dir, headers, [dkim.domains."NAME"] selector (pigeon.config.dkim)
    [tls_policy]  outbound MTA-STS and DANE, our own MTA-STS policy (pigeon.config.tlspolicy)
    [pop3]      listen, tls_listen, autologout, max_errors (pigeon.config.pop3)
    [mail_auth] [mail_auth.domains.NAME]: inbound SPF/DKIM/DMARC/ARC (pigeon.config.mailauth)
    [imap]      listen, tls_listen, max_literal, autologout, ... (pigeon.config.imap, docs/imap.md)
    [capture]   listeners, accounts, max_size, max_age, sweep_interval (docs/capture.md)

    [transports]
    "example.org" = "smtp:[mail.example.org]:587"
    ".example.org" = "lmtp:unix:/run/dovecot/lmtp"

    [[plugins]]                       # users' Python hooks (docs/hooks.md), in this order
    path = "reject_one.py"            # or module = "pkg.mod", or entry_point = "name"
    timeout = 10                      # seconds per call
    [plugins.config]                  # the plugin's own keys, checked by its settings class
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pigeon.config.abuse import DnsblConfig, GreylistConfig, PostscreenConfig, RateLimitConfig
from pigeon.config.capture import CaptureConfig
from pigeon.config.console import ConsoleConfig
from pigeon.config.dkim import DkimConfig
from pigeon.config.forwarding import ArcConfig, SrsConfig
from pigeon.config.imap import ImapConfig
from pigeon.config.listen import ListenAddress
from pigeon.config.mailauth import MailAuthConfig
from pigeon.config.pop3 import Pop3Config
from pigeon.config.reports import ReportsConfig
from pigeon.config.tlspolicy import TlsPolicyConfig
from pigeon.config.webhooks import WebhookConfig


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A local domain: mail for it is delivered to Maildirs under data_dir."""

    name: str  # lowercased domain name
    #: `mailboxes`: the accepted local parts (lowercased). None (key absent):
    #: any local part is accepted. With a list, unknown ones get 550 5.1.1.
    mailboxes: frozenset[str] | None = None
    capture: bool = False  # `capture`: its mail is captured, not delivered (docs/capture.md)


@dataclass(frozen=True, slots=True)
class Limits:
    """[limits]: integers; `load` enforces the minimum given in each comment."""

    message_size: int = (
        10_240_000  # [limits] message_size, octets (Postfix message_size_limit); >= 0, 0 = none
    )
    recipients: int = 1000  # [limits] recipients per message (smtpd_recipient_limit); >= 1
    errors: int = 20  # [limits] errors before 421 (smtpd_hard_error_limit); >= 1
    junk_commands: int = 100  # [limits] junk_commands: NOOP/RSET/VRFY/HELP/ETRN per message before 421 (smtpd_junk_command_limit); >= 1
    header_size: int = 102_400  # [limits] header_size, octets: largest header section (Postfix header_size_limit); >= 1024
    hop_count: int = 100  # [limits] hop_count: Received: fields allowed (RFC 5321 §6.3); >= 1
    connections: int = 1000  # [limits] connections: simultaneous SMTP sessions in total; 0 = none
    connections_per_ip: int = (
        50  # [limits] connections_per_ip (smtpd_client_connection_count_limit); 0 = none
    )
    new_mailboxes_per_hour: int = 100  # [limits] new_mailboxes_per_hour: Maildirs one client may have created per hour in domains without a mailbox list; 0 = none


@dataclass(frozen=True, slots=True)
class Timeouts:
    """[timeouts]: seconds (TOML integer or float); `load` rejects nan/inf and negatives."""

    command: float = 300.0  # [timeouts] command, s: to send one whole command (RFC 5321 §4.5.3.2.7)
    data_block: float = (
        180.0  # [timeouts] data_block, s: silence allowed inside DATA/BDAT (§4.5.3.2.5)
    )
    data_total: float = 3600.0  # [timeouts] data_total, s: a whole DATA phase at most
    shutdown_grace: float = (
        30.0  # [timeouts] shutdown_grace, s: SIGTERM waits this long for transactions (>= 0)
    )
    greet_pause: float = (
        0.0  # [timeouts] greet_pause, s: wait before the 220; talkers are refused (0 = off)
    )


@dataclass(frozen=True, slots=True)
class SmtpPolicy:
    """[smtp]: protocol policy switches, mapped onto proto.server.SessionConfig by load.session_config."""

    bare_newline: Literal["reject"] = "reject"  # [smtp] bare_newline
    eight_bit_undeclared: Literal["accept", "reject"] = "accept"  # [smtp] eight_bit_undeclared
    pipelining: bool = True  # [smtp] pipelining
    chunking: bool = True  # [smtp] chunking
    smtputf8: bool = True  # [smtp] smtputf8
    dsn: bool = True  # [smtp] dsn
    etrn: bool = False  # [smtp] etrn: RFC 1985, relay_networks/authenticated clients only
    eight_bit_mime: bool = True  # [smtp] eight_bit_mime


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """[queue]: queue manager settings."""

    fsync: bool = True  # [queue] fsync: never turn off outside tests/benchmarks
    run_interval: float = 60.0  # [queue] run_interval, s: how often the manager rescans
    min_backoff: float = 300.0  # [queue] min_backoff, s: first retry (minimal_backoff_time); > 0
    max_backoff: float = (
        4000.0  # [queue] max_backoff, s: longest retry delay (maximal_backoff_time); >= min_backoff
    )
    max_lifetime: float = (
        432000.0  # [queue] max_lifetime, s: 5 days, then bounce (maximal_queue_lifetime); > 0
    )
    delay_warning: float = 14400.0  # [queue] delay_warning, s: 4 h, then a "delayed" DSN; 0 = never
    concurrency: int = 64  # [queue] concurrency: messages in delivery at once; >= 1
    min_free: int = 0  # [queue] min_free, octets (Postfix queue_minfree): MAIL gets 452 4.3.1 below max(min_free, 1.5 x limits.message_size) free; >= 0
    store: str = ""  # [queue] store: "" = the embedded store in data_dir; postgresql://USER@HOST:PORT/DB = a queue several nodes share (docs/cluster-status.md)
    node: str = ""  # [queue] node: this node's name in a shared queue's claims; "" = the host name
    lease: float = 60.0  # [queue] lease, s: a shared queue's claim lasts this long unless renewed (every lease/3)
    local_at_accept: bool = True  # [queue] local_at_accept: write all-local mail into its Maildirs before the 250, no queue entry (qmgr/direct.py)


# --- outbound delivery ([delivery], [transports]) ------------------------------------


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """A parsed next-hop spec, as written in [transports] or delivery.relay_host.

    The parts map one to one onto `pigeon.delivery.api.Nexthop` (minus the
    recipient domain, which the router adds). Postfix syntax:

        local | discard                         -> TransportSpec("local") / ("discard")
        smtp:host  smtp:host:port               -> mx=True: MX lookup of host
        smtp:[host]  smtp:[host]:port           -> mx=False: host's A/AAAA only
        lmtp:host:port  lmtp:[host]:port        -> mx=False always (LMTP never uses MX)
        lmtp:unix:/path/to/socket               -> host="/path/to/socket", port=None
    An IP address as host always has mx=False; IPv6 is written in brackets,
    "[2001:db8::1]" or "[ipv6:2001:db8::1]", and stored without them.
    """

    transport: Literal["smtp", "lmtp", "local", "discard"]
    host: str | None = None  # name (lowercased), IP address, or Unix socket path
    port: int | None = None  # None: the transport's default (remote_port / 24)
    mx: bool = True

    def __str__(self) -> str:
        if self.transport == "local" and self.host:
            return f"local:{self.host}"  # a receive check's folder (parse_nexthop)
        if self.transport in ("local", "discard") or self.host is None:
            return self.transport
        if self.host.startswith("/"):
            return f"{self.transport}:unix:{self.host}"
        where = f"[{self.host}]" if not self.mx else self.host
        return f"{self.transport}:{where}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True, slots=True)
class Nameserver:
    """One DNS server from delivery.dns_servers ("ip" or "ip:port", "[v6]:port")."""

    address: str  # IPv4 or IPv6 address, normalised
    port: int = 53


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """[delivery]: outbound SMTP/LMTP delivery and the DNS it uses (pigeon.routing.mx)."""

    remote_port: int = 25  # [delivery] remote_port: TCP port of remote MXs; 1-65535
    dns_servers: tuple[
        Nameserver, ...
    ] = ()  # [delivery] dns_servers: ["ip", "ip:port"]; empty = /etc/resolv.conf
    dns_timeout: float = 10.0  # [delivery] dns_timeout, s: one DNS lookup at most; > 0
    #: [delivery] relay_host: smarthost for all remote mail; "" (None) = deliver
    #: directly. Postfix syntax "host", "host:port", "[host]", "[host]:port";
    #: brackets = no MX lookup. Parsed into transport "smtp".
    relay_host: TransportSpec | None = None
    relay_user: str = ""  # [delivery] relay_user: AUTH user at relay_host; "" = no AUTH
    relay_password_file: Path | None = (
        None  # [delivery] relay_password_file: holds the password; must exist if relay_user is set
    )
    helo_name: str = ""  # [delivery] helo_name: name in our EHLO; "" = `hostname`
    connect_timeout: float = 30.0  # [delivery] connect_timeout, s (Postfix smtp_connect_timeout)
    command_timeout: float = 300.0  # [delivery] command_timeout, s: per reply (RFC 5321 §4.5.3.2)
    data_block_timeout: float = (
        180.0  # [delivery] data_block_timeout, s: per block sent (§4.5.3.2.5)
    )
    data_done_timeout: float = (
        600.0  # [delivery] data_done_timeout, s: reply to final "." (§4.5.3.2.6)
    )
    tls: Literal["none", "may", "encrypt", "verify"] = (
        "may"  # [delivery] tls: STARTTLS policy (Postfix smtp_tls_security_level)
    )
    tls_ca_file: Path | None = (
        None  # [delivery] tls_ca_file: CA bundle for "verify"; "" (None) = system CAs
    )
    destination_concurrency: int = 20  # [delivery] destination_concurrency: connections per nexthop (default_destination_concurrency_limit); >= 1
    destination_recipients: int = 50  # [delivery] destination_recipients: RCPTs per transaction (smtp_destination_recipient_limit); >= 1
    #: [delivery] own_addresses: extra IP addresses and names that are "us" for
    #: MX loop detection (RFC 5321 §5.1); `hostname` and the listen addresses
    #: count anyway. IPs normalised, names lowercased.
    own_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: operator logging (see pigeon.obs.logsetup for the line formats)."""

    format: Literal["text", "json"] = "text"  # [log] format
    level: Literal["debug", "info", "warning", "error"] = "info"  # [log] level
    file: Path | None = None  # [log] file; None = stderr (reopened if rotated away)
    #: [log] syslog: also send to syslog (facility mail): "" = no, "/dev/log"
    #: (a Unix socket path) or "host:port" (UDP, RFC 5426).
    syslog: str = ""


# --- secure transport and submission ([tls], [auth]; issue 4) -------------------------

#: Mozilla "intermediate" TLS 1.2 suites (ECDHE + AEAD only); TLS 1.3 suites are
#: OpenSSL's defaults and are not affected by this list.
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """[tls]: the server certificate and protocol settings (pigeon.net.tls)."""

    cert_file: Path | None = (
        None  # [tls] cert_file: PEM chain, leaf first; None = self-signed in data_dir/tls/
    )
    key_file: Path | None = None  # [tls] key_file: PEM private key; set both or neither
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"  # [tls] min_version
    ciphers: str = DEFAULT_CIPHERS  # [tls] ciphers: OpenSSL cipher list for TLS 1.2
    starttls: bool = True  # [tls] starttls: offer STARTTLS on `listen` (role smtp) listeners
    handshake_timeout: float = 30.0  # [tls] handshake_timeout, s; > 0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """[auth]: SMTP AUTH (RFC 4954) and failed-login limits (pigeon.auth.ratelimit)."""

    mechanisms: tuple[str, ...] = (
        "PLAIN",
        "LOGIN",
        "SCRAM-SHA-256",
    )  # [auth] mechanisms, offered only under TLS
    smtp_listener: bool = (
        False  # [auth] smtp_listener: offer AUTH on `listen` (port 25) listeners too
    )
    check_from_header: bool = True  # [auth] check_from_header: an authenticated user's From: must be an owned address (553 5.7.1)
    slow_after: int = 3  # [auth] slow_after: failures from one address (IPv6: /64) before replies are delayed; >= 1
    failure_delay: float = (
        1.0  # [auth] failure_delay, s: added per further failure (at most 10 s); >= 0
    )
    max_failures: int = 10  # [auth] max_failures: failures (or checks in flight) before the address is refused (421 4.7.0); >= 1
    failure_window: float = (
        900.0  # [auth] failure_window, s: failures older than this are forgotten; > 0
    )
    lockout: float = (
        300.0  # [auth] lockout, s: how long a refused address (IPv6: /64) stays refused; > 0
    )
    min_password_length: int = 12  # [auth] min_password_length: characters a new password needs (pigeon user add/passwd); >= 1


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """[admin]: the local control socket and the Prometheus endpoint (pigeon.admin)."""

    control_socket: Path | None = (
        None  # [admin] control_socket: Unix socket, mode 0600; None = <data_dir>/control.sock
    )
    pid_file: Path | None = (
        None  # [admin] pid_file: the main process's pid, mode 0644; None = <data_dir>/pigeon.pid
    )
    submit_socket: Path | None = (
        None  # [admin] submit_socket: local users' sendmail, mode 0666; None = <data_dir>/submit.sock
    )
    #: [admin] metrics_listen: "host:port" of the HTTP endpoint serving
    #: GET /metrics (Prometheus text format); "" (None) = no endpoint.
    metrics_listen: ListenAddress | None = ListenAddress("127.0.0.1", 9925)


# --- users' Python hooks ([[plugins]]; docs/hooks.md) -----------------------------------


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One `[[plugins]]` entry: where the plugin's code is, its time limit, its own table.

    Exactly one of `module`, `entry_point` and `path` is set. The loader only
    checks this shape; the plugin's own table (`config`) is checked against
    the settings class the plugin declares when the plugin is loaded
    (pigeon.hooks.load), still before anything starts.
    """

    name: str  # name: for logs and the plugin's state directory; default: from module/path/entry point
    module: str = ""  # module: "package.module" or "package.module:attribute"
    entry_point: str = ""  # entry_point: the name of an entry point of group "pigeon.plugins"
    path: Path | None = None  # path: a .py file; relative to the configuration file's directory
    timeout: float = 10.0  # timeout, s: one call of the plugin at most, then 451 4.3.0; > 0
    #: config: the plugin's own table, as written (checked by the plugin's settings class).
    config: dict[str, object] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the code comes from, as written ("module x", "path y", ...)."""
        if self.module:
            return f"module {self.module}"
        if self.entry_point:
            return f"entry point {self.entry_point}"
        return f"path {self.path}"


def _default_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2525),)


def _default_submission_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2587),)


def _default_submissions_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2465),)


def _default_domains() -> dict[str, DomainConfig]:
    return {"localhost": DomainConfig("localhost")}


@dataclass(frozen=True, slots=True)
class MilterConfig:
    """One [[milters]] entry (checked by pigeon.config._milter, docs/milter.md)."""

    name: str  # name: for logs and errors
    socket: str  # socket: "inet:host:port", "inet:[v6]:port" or "unix:/path"
    connect_timeout: float = 30.0  # connect_timeout: seconds to connect and negotiate
    command_timeout: float = 30.0  # command_timeout: seconds for the answer to one command
    content_timeout: float = (
        300.0  # content_timeout: seconds to send the message and hear its verdict
    )
    default_action: str = "tempfail"  # default_action: "tempfail" or "accept" when it fails

    @property
    def address(self) -> str | tuple[str, int]:
        """The socket's path ("unix:", "local:") or (host, port) ("inet:")."""
        kind, _, rest = self.socket.partition(":")
        if kind != "inet":
            return rest
        host, _, port = rest.rpartition(":")
        return host.removeprefix("[").removesuffix("]"), int(port)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with `pigeon.config.load_config`, which checks every value."""

    hostname: str = "localhost"  # hostname: our name in 220/Received (default: the machine's FQDN)
    data_dir: Path = Path("./pigeon-data")  # data_dir: queue and mailboxes live here
    user: str = ""  # user: started as root, become this user after binding ("" = stay)
    group: str = ""  # group: with `user`; "" = the user's primary group
    workers: int = 1  # workers: processes accepting mail on the shared listeners (1-64); the first also delivers
    listen: tuple[ListenAddress, ...] = field(default_factory=_default_listen)  # listen
    relay_networks: tuple[
        ipaddress.IPv4Network | ipaddress.IPv6Network, ...
    ] = ()  # relay_networks: default none
    domains: dict[str, DomainConfig] = field(default_factory=_default_domains)  # [domains.NAME]
    aliases: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # [aliases]: "local@domain" or catch-all "@domain" (lowercased) -> target addresses (domain lowercased)
    #: recipient_delimiter: characters separating a local part from its
    #: extension (Postfix recipient_delimiter): with "+", alice+news@ is
    #: delivered to alice. "" = none. Any of the characters splits.
    recipient_delimiter: str = "+"
    #: aliases_file: an aliases(5) file (/etc/aliases format) read at start-up
    #: and on reload; None = none. Its entries land in `local_aliases`.
    aliases_file: Path | None = None
    #: Not a key: the entries read from `aliases_file` (local part, lowercased
    #: -> targets), applied in every local domain. Filled by the loader.
    local_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shared_directory: tuple = ((), ())  # not a key: the shared database's rows (config/shared.py)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    smtp: SmtpPolicy = field(default_factory=SmtpPolicy)
    queue: QueueConfig = field(default_factory=QueueConfig)
    log: LogConfig = field(default_factory=LogConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    #: [transports]: recipient domain (lowercased) -> next hop. "example.org"
    #: matches that domain only, ".example.org" its subdomains (Postfix
    #: transport(5)). Checked and parsed at load time.
    transports: dict[str, TransportSpec] = field(default_factory=dict)
    #: submission_listen: role "submission" (RFC 6409, port 587): STARTTLS, then AUTH before MAIL. [] = none.
    submission_listen: tuple[ListenAddress, ...] = field(default_factory=_default_submission_listen)
    #: submissions_listen: role "submissions" (RFC 8314, port 465): TLS from the first byte, AUTH before MAIL. [] = none.
    submissions_listen: tuple[ListenAddress, ...] = field(
        default_factory=_default_submissions_listen
    )
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)  # [console]: docs/api.md
    # The abuse controls (schema and meaning: pigeon.config.abuse).
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    dnsbl: DnsblConfig = field(default_factory=DnsblConfig)
    greylist: GreylistConfig = field(default_factory=GreylistConfig)
    postscreen: PostscreenConfig = field(default_factory=PostscreenConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)  # [dkim]: outbound DKIM signing
    #: [mail_auth]: SPF, DKIM, DMARC, ARC of received mail (pigeon.config.mailauth).
    mail_auth: MailAuthConfig = field(default_factory=MailAuthConfig)
    #: [[plugins]]: users' Python hooks, asked after the built-in checks, in this order.
    plugins: tuple[PluginConfig, ...] = ()
    #: [[milters]]: mail filters asked in this order at every stage (docs/milter.md).
    milters: tuple[MilterConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()  # [[webhooks]]: pigeon.config.webhooks
    #: [reports]: aggregate DMARC and TLS-RPT reports (off by default).
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    #: [tls_policy]: outbound MTA-STS and DANE (schema and meaning: pigeon.config.tlspolicy).
    tls_policy: TlsPolicyConfig = field(default_factory=TlsPolicyConfig)
    srs: SrsConfig = field(default_factory=SrsConfig)  # [srs]: pigeon.config.forwarding
    arc: ArcConfig = field(default_factory=ArcConfig)  # [arc]: pigeon.config.forwarding
    imap: ImapConfig = field(default_factory=ImapConfig)  # [imap]: pigeon.config.imap, docs/imap.md
    capture: CaptureConfig = field(default_factory=CaptureConfig)  # [capture]: docs/capture.md
    pop3: Pop3Config = field(default_factory=Pop3Config)  # [pop3]: pigeon.config.pop3

    @property
    def mailbox_root(self) -> Path:
        return self.data_dir / "mailboxes"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def control_socket(self) -> Path:
        """The control socket's path ([admin] control_socket or data_dir/control.sock)."""
        return self.admin.control_socket or self.data_dir / "control.sock"

    @property
    def pid_file(self) -> Path:
        """The PID file's path ([admin] pid_file or data_dir/pigeon.pid)."""
        return self.admin.pid_file or self.data_dir / "pigeon.pid"

    @property
    def dkim_key_dir(self) -> Path:
        """Where the DKIM keys live ([dkim] key_dir or data_dir/dkim)."""
        return self.dkim.key_dir or self.data_dir / "dkim"

    @property
    def submit_socket(self) -> Path:
        """Where local users submit mail ([admin] submit_socket or data_dir/submit.sock)."""
        return self.admin.submit_socket or self.data_dir / "submit.sock"
