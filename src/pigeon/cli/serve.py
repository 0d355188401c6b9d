"""`pigeon serve`: build the configuration, set up logging, run the server.

Contract:
  * Configuration is built in the documented order: embedded defaults, then
    the configuration file, then the flags. The file is found by the rule
    every command uses (pigeon.cli._config: --config FILE, $PIGEON_CONFIG,
    /etc/pigeon/pigeon.toml; none: the embedded defaults), once: SIGHUP
    reloads that file. Started with another file while the system one
    exists, it logs a warning: the other commands would not find it.
    Flags that name lists (--listen, --submission-listen,
    --submissions-listen, --domain, --relay-network) REPLACE the file's
    list when given at all; they never append to it. A --domain that also
    has a [domains."NAME"] table in the file keeps that table's
    `mailboxes`. An empty value ("") of --submission-listen,
    --submissions-listen, --imap-listen or --imaps-listen turns that role
    off (the file's `[]`); an empty
    --metrics-listen turns the endpoint off, an empty --console-listen
    the HTTP API.
  * Every listener address has a flag (one per role, the metrics
    endpoint and the HTTP API), so a second instance can be moved off every port of the
    first; a bind error names the key and the flag (pigeon.net.listener).
  * Any configuration problem (file, flags, unopenable log file) prints
    "pigeon: <message>" and returns 78 (EX_CONFIG) before anything starts.
  * With a shared store (`[queue] store = "postgresql://..."`) the
    configuration is the file's and the flags' plus the domains and aliases
    the cluster shares (`pigeon domain|alias`, config/shared.py: the file
    wins a conflict; its warnings are logged), read at start and at every
    reload. A database that cannot be read at start: one line, 73
    (EX_CANTCREAT, as when the store cannot be opened); at a reload: the
    reload is refused, the running configuration stays.
  * The server itself is pigeon.app.run(config), imported only when it is
    about to run; its return value is the exit status (pigeon/app/exits.py:
    the same with one process and with workers). Ctrl-C that escapes it
    returns 130.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, fail
from pigeon.cli._config import elsewhere_warning, load_for_server, locate
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.obs.logsetup import setup_logging
from pigeon.privileges import tighten_umask
from pigeon.vocab.errors import StoreError

log = logging.getLogger("pigeon")

HELP = "run the mail server in the foreground"

DESCRIPTION = """\
Run pigeon in the foreground: accept SMTP connections on the listen
addresses, queue what is accepted, deliver it, until SIGTERM or SIGINT.
On SIGTERM (or SIGINT, or `pigeon stop`) pigeon stops accepting at once,
abandons the deliveries in progress (tried again after the next start),
lets inbound sessions finish their transaction for timeouts.shutdown_grace,
answers the rest 421 4.3.2, and exits 0, within the grace period + 5 s in
every case;
a second SIGTERM or SIGINT ends it at once.

The configuration is the embedded defaults, then the configuration file,
then the options below. The file is --config FILE, else $PIGEON_CONFIG,
else /etc/pigeon/pigeon.toml when it exists: the same rule as every other
pigeon command, so they all find this server. With no file and no options,
pigeon listens on 127.0.0.1:2525, accepts mail for the domain "localhost"
and keeps its data in ./pigeon-data.

--listen, --submission-listen, --submissions-listen, --imap-listen,
--imaps-listen, --domain and --relay-network may be repeated. Given at all,
they REPLACE the corresponding list of the file (they never add to it); a
--domain that also has a [domains."NAME"] table in the file keeps that
table's mailboxes list. --submission-listen "", --submissions-listen "",
--imap-listen "" and --imaps-listen "" turn that role off,
--metrics-listen "" the metrics endpoint, --console-listen "" the HTTP
API: a second instance beside a
running one needs its own address for every role it keeps, and its own
--data-dir (the control socket lives there).
"""

EPILOG = """\
examples:
  pigeon serve
      quick start on 127.0.0.1:2525 for the domain localhost
  pigeon serve --config /etc/pigeon/pigeon.toml
  pigeon serve --listen 0.0.0.0:25 --listen '[::]:25' --domain example.test \\
               --relay-network 192.0.2.0/24 --data-dir /var/lib/pigeon
  pigeon serve --log-format json --log-level debug      (with /etc/pigeon/pigeon.toml)
  pigeon serve --listen 127.0.0.1:2526 --submission-listen "" --submissions-listen "" \\
               --imap-listen "" --imaps-listen "" --metrics-listen "" --console-listen "" \\
               --data-dir ./second
      a second instance beside the first: only an smtp listener of its own

exit status (the same with one process or several, see workers): 0 after a
clean shutdown, 78 for a configuration error or a broken TLS certificate,
69 when a listen address cannot be bound, 73 when data_dir is unusable
(or its queue database is damaged: see pigeon queue rebuild --help; or it
holds data of a newer pigeon: see pigeon data --help),
75 when another pigeon runs on the same data_dir (stop it first, or use
pigeon restart), 77 when it cannot become the configured user.

Listening sockets passed in the systemd protocol (LISTEN_FDS: socket
activation with contrib/pigeon.socket, or pigeon restart) are used instead
of binding; see docs/admin.md, "Restart".
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        type=Path,
        help="TOML configuration file (default: $PIGEON_CONFIG, else "
        "/etc/pigeon/pigeon.toml if present, else embedded defaults)",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        action="append",
        help='address to listen on, "host:port" or "[ipv6]:port"; repeatable; '
        "replaces the file's listen list",
    )
    parser.add_argument(
        "--submission-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the submission role (port 587: STARTTLS, then AUTH); "
        'repeatable; replaces submission_listen; "" turns the role off',
    )
    parser.add_argument(
        "--submissions-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the submissions role (port 465: implicit TLS, then "
        'AUTH); repeatable; replaces submissions_listen; "" turns it off',
    )
    parser.add_argument(
        "--imap-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the IMAP role (port 143: STARTTLS, then LOGIN); repeatable; "
        'replaces [imap] listen; "" turns it off',
    )
    parser.add_argument(
        "--imaps-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the IMAPS role (port 993: implicit TLS); repeatable; "
        'replaces [imap] tls_listen; "" turns it off',
    )
    parser.add_argument(
        "--pop3-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the pop3 role (port 110: STLS, then a login); repeatable; "
        'replaces [pop3] listen; "" turns the role off',
    )
    parser.add_argument(
        "--pop3-tls-listen",
        metavar="HOST:PORT",
        action="append",
        help="address of the pop3s role (port 995: implicit TLS); repeatable; "
        'replaces [pop3] tls_listen; "" turns the role off',
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help='address of the Prometheus endpoint ([admin] metrics_listen); "" = none',
    )
    parser.add_argument(
        "--console-listen",
        metavar="HOST:PORT",
        help='address of the HTTP API ([console] listen, docs/api.md); "" = none',
    )
    parser.add_argument(
        "--domain",
        metavar="NAME",
        action="append",
        help="local domain to accept mail for; repeatable; replaces the file's domains",
    )
    parser.add_argument(
        "--relay-network",
        metavar="CIDR",
        action="append",
        help="network allowed to relay, e.g. 192.0.2.0/24; repeatable; "
        "replaces the file's relay_networks",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the queue: postgresql://USER@HOST:PORT/DB, shared with other nodes "
        "(sets queue.store; see docs/cluster-status.md); default the data directory",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory for the queue and the mailboxes (default ./pigeon-data)",
    )
    parser.add_argument(
        "--hostname",
        metavar="NAME",
        help="our name in the greeting and Received: (default: the machine's FQDN)",
    )
    parser.add_argument("--log-format", metavar="text|json", help="log line format (default text)")
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error (default info)"
    )
    parser.add_argument(
        "--log-file", metavar="FILE", help="append the log to FILE instead of stderr"
    )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration overrides the flags ask for, in the TOML document's shape."""
    out: dict[str, Any] = {}
    if args.listen is not None:
        out["listen"] = list(args.listen)
    for role in ("submission_listen", "submissions_listen"):
        given = getattr(args, role)
        if given is not None:
            # "" turns the role off: [] in the file's terms.
            out[role] = [address for address in given if address != ""]
    readers = (
        ("pop3", args.pop3_listen, args.pop3_tls_listen),
        ("imap", args.imap_listen, args.imaps_listen),
    )
    for section, *flags in readers:  # the mail readers' [section] listen, tls_listen
        keys = {
            key: [address for address in given if address != ""]
            for key, given in zip(("listen", "tls_listen"), flags)
            if given is not None
        }
        if keys:
            out[section] = keys
    if args.metrics_listen is not None:
        out["admin"] = {"metrics_listen": args.metrics_listen}
    if args.console_listen is not None:
        out["console"] = {"listen": args.console_listen}
    if args.domain is not None:
        out["domains"] = list(args.domain)
    if args.relay_network is not None:
        out["relay_networks"] = list(args.relay_network)
    if args.data_dir is not None:
        out["data_dir"] = args.data_dir
    if args.store is not None:
        out["queue"] = {"store": args.store}
    if args.hostname is not None:
        out["hostname"] = args.hostname
    log = {
        key: value
        for key, value in (
            ("format", args.log_format),
            ("level", args.log_level),
            ("file", args.log_file),
        )
        if value is not None
    }
    if log:
        out["log"] = log
    return out


def build_config(args: argparse.Namespace) -> Config:
    """The located configuration file with the flags over it, and the shared
    domains and aliases (see the contract); raises ConfigError."""
    try:
        return with_directory(load_for_server(args.config, overrides_from(args)))
    except StoreError as exc:
        raise ConfigError(
            "queue.store", f"cannot read the shared domains and aliases: {exc}"
        ) from None


def with_directory(config: Config) -> Config:
    """`config` with the shared domains and aliases, warnings logged; StoreError."""
    from pigeon.store.factory import with_shared_directory

    merged, warnings = with_shared_directory(config)
    for warning in warnings:
        log.warning("%s", warning)
    return merged


def run(args: argparse.Namespace, app_run: Callable[[Config], int] | None = None) -> int:
    """Check the configuration, set up logging, run the server (`app_run`: test seam)."""
    # Located once: a SIGHUP reloads this same file (or the same defaults).
    args.config = locate(args.config).path
    try:
        config = load_for_server(args.config, overrides_from(args))
        tighten_umask()  # before the log file, the first file pigeon creates
        setup_logging(config.log)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:  # after the logging: the merge's warnings go to the log
        config = with_directory(config)
    except StoreError as exc:
        return fail(f"cannot read the shared domains and aliases: {exc}", EX_CANTCREAT)
    warning = elsewhere_warning(args.config)
    if warning:
        log.warning("%s", warning)
    if app_run is None:
        from pigeon.app import run as run_app

        def app_run(config: Config) -> int:
            # SIGHUP loads the same file with the same flags again.
            return run_app(
                config, reload_config=lambda: build_config(args), config_path=args.config
            )

    try:
        return int(app_run(config))
    except KeyboardInterrupt:
        return 130
