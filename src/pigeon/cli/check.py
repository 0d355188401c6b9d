"""`pigeon check-config [FILE]`: load a configuration file the way `serve` would.

Contract:
  * Without FILE, the file `serve` would read (pigeon.cli._config: $PIGEON_CONFIG,
    else /etc/pigeon/pigeon.toml); none found is an error (78).
  * The file is checked by the same `load_config` that `serve` uses, with no
    command-line overrides, so "ok" here means `pigeon serve --config FILE`
    gets past configuration.
  * On success: "ok: FILE" and a short summary on stdout, exit 0. On failure:
    "pigeon: <error>" on stderr, exit 78 (EX_CONFIG). A configured TLS
    certificate and key are checked as start-up checks them. Nothing is created or
    opened besides reading FILE (the log file and data_dir are not touched).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._config import CONFIG_ENV, SYSTEM_CONFIG, locate
from pigeon.config.load import ConfigError, load_config
from pigeon.config.schema import Config

HELP = "check a configuration file and summarise it"

DESCRIPTION = """\
Load FILE exactly as "pigeon serve --config FILE" would: every key is
checked, unknown keys are errors (with the closest known key suggested).
On success print "ok: FILE" and what the server would do; otherwise print
the first problem, naming the file and the key, and exit 78.
"""

EPILOG = """\
examples:
  pigeon check-config
      ok: /etc/pigeon/pigeon.toml
        hostname:       mx.example.test
        listen:         0.0.0.0:25, [::]:25
        domains:        example.test (2 mailboxes), localhost (any mailbox)
        ...
  pigeon check-config bad.toml
      pigeon: bad.toml: limits.mesage_size: unknown key (did you mean "message_size"?)

exit status: 0 when the file is valid, 78 when it is not.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, nargs="?",
                        help="the TOML configuration file (default: the one `serve` would "
                             "read: $PIGEON_CONFIG, else /etc/pigeon/pigeon.toml)")


def summary(config: Config) -> list[str]:
    """The lines describing `config` after "ok: FILE"."""
    domains = []
    for name in sorted(config.domains):
        boxes = config.domains[name].mailboxes
        count = "any mailbox" if boxes is None else f"{len(boxes)} mailbox" + ("" if len(boxes) == 1 else "es")
        domains.append(f"{name} ({count})")
    rows = [
        ("hostname", config.hostname),
        ("listen", ", ".join(str(a) for a in config.listen)),
        ("domains", ", ".join(domains) or "none (no local delivery)"),
        ("relay networks", ", ".join(str(n) for n in config.relay_networks) or "none"),
        ("aliases", str(len(config.aliases))),
        ("data dir", str(config.data_dir)),
        ("log", f"{config.log.format}, {config.log.level}, to {config.log.file or 'stderr'}"),
    ]
    return [f"  {label + ':':<15} {value}" for label, value in rows]


def run(args: argparse.Namespace) -> int:
    args.file = locate(args.file).path
    if args.file is None:
        return fail(f"no configuration file to check: give FILE, set ${CONFIG_ENV}, "
                    f"or install {SYSTEM_CONFIG}", EX_CONFIG)
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    if config.tls.cert_file is not None and config.tls.key_file is not None:
        # The same checks as start-up: readable, parsable, valid now, key
        # matching the certificate. A self-signed default is made at start-up.
        from pigeon.net.tls import TlsError, build_context, check_certificate
        try:
            check_certificate(config.tls.cert_file)
            build_context(config.tls, config.tls.cert_file, config.tls.key_file)
        except TlsError as exc:
            return fail(str(exc), EX_CONFIG)
    print(f"ok: {args.file}")
    for line in summary(config):
        print(line)
    return 0
