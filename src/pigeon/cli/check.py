"""`pigeon check-config [FILE]`: load a configuration file the way `serve` would.

Contract:
  * Without FILE, the file `serve` would read (pigeon.cli._config: $PIGEON_CONFIG,
    else /etc/pigeon/pigeon.toml); none found is an error (78).
  * The file is checked by the same loader that `serve` uses
    (`collect_config`), with no command-line overrides, so "ok" here means
    `pigeon serve --config FILE` gets past configuration.
  * Every problem found is reported in one run, one line each on stderr,
    "pigeon: FILE:LINE: key: message", in the order of the file; then exit
    78 (EX_CONFIG). A configured TLS certificate and key are checked as
    start-up checks them, in the same run (their problem names the tls key);
    so are the DKIM keys (`[dkim]`: every domain's key pair read as start-up
    reads it, a problem naming the dkim key and the file) and the webhooks'
    `secret_file`s (`[[webhooks]]`, read as start-up reads them).
  * Risky but valid settings (`pigeon.config.risks`: an open relay, a
    public listener with relay networks) are warnings on stderr,
    "pigeon: FILE:LINE: warning: key: message"; they do not change the
    exit status.
  * On success: "ok: FILE" and a summary on stdout (every listener by role,
    TLS, domains, relaying, transports, milters, metrics, files), exit 0. Nothing is
    created or opened besides reading FILE, the certificate files, the
    DKIM keys and the webhook secret files (the log file and data_dir are
    not touched), and, with a shared store (`[queue] store =
    "postgresql://..."`), reading the cluster's shared domains and aliases
    (docs/cluster.md): the summary then shows what a node started with
    this file would serve, the file's entries plus the database's (marked
    "shared"), merged as `serve` merges them (config/shared.py), and the
    merge's warnings. A database that cannot be read is a warning (the
    file itself is fine; `serve` would refuse to start, 73): the summary
    then shows the file's entries only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from pigeon.cli._common import EX_CONFIG, PROG, fail
from pigeon.cli._config import CONFIG_ENV, SYSTEM_CONFIG, locate
from pigeon.config.load import ConfigError, ConfigErrors, collect_config
from pigeon.config.locate import KeyLocator
from pigeon.config.risks import risks
from pigeon.config.schema import Config
from pigeon.vocab import StoreError

HELP = "check a configuration file and summarise it"

DESCRIPTION = """\
Load FILE exactly as "pigeon serve --config FILE" would: every key is
checked, unknown keys are errors (with the closest known key suggested).
Every problem is printed in one run, each with the file, the line and the
key; then the exit status is 78. Risky settings (an open relay, a public
listener with relay networks) are printed as warnings. On success print
"ok: FILE" and what the server would do.
"""

EPILOG = """\
examples:
  pigeon check-config
      ok: /etc/pigeon/pigeon.toml
        hostname:       mx.example.test
        listen:         0.0.0.0:25, [::]:25
        submission:     0.0.0.0:587 (STARTTLS, then AUTH)
        ...
  pigeon check-config bad.toml
      pigeon: bad.toml:7: limits.mesage_size: unknown key (did you mean "message_size"?)
      pigeon: bad.toml:12: smtp.pipelining: must be true or false, got "yes"

exit status: 0 when the file is valid (warnings or not), 78 when it is not.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        nargs="?",
        help="the TOML configuration file (default: the one `serve` would "
        "read: $PIGEON_CONFIG, else /etc/pigeon/pigeon.toml)",
    )


def _listeners(addrs, what: str) -> str:
    return f"{', '.join(str(a) for a in addrs)} ({what})" if addrs else "off"


def summary(config: Config, file_only: Config | None = None) -> list[str]:
    """The lines describing `config` after "ok: FILE"; `file_only`: the
    file's own configuration when `config` has the cluster's shared
    entries merged in (what only the database adds is marked "shared")."""
    base = config if file_only is None else file_only
    shared_domains = set(config.domains) - set(base.domains)
    shared_aliases = len(config.aliases) - len(base.aliases)  # the file's are always kept
    domains = []
    for name in sorted(config.domains):
        boxes = config.domains[name].mailboxes
        count = (
            "any mailbox"
            if boxes is None
            else f"{len(boxes)} mailbox" + ("" if len(boxes) == 1 else "es")
        )
        domains.append(f"{name} ({count}{', shared' if name in shared_domains else ''})")
    aliases = str(len(config.aliases))
    if shared_aliases:
        aliases += f" ({shared_aliases} shared)"
    tls = config.tls
    if tls.cert_file is not None:
        certificate = f"certificate {tls.cert_file}, key {tls.key_file}"
    else:
        certificate = f"self-signed certificate (made at start-up in {config.data_dir / 'tls'})"
    starttls = "STARTTLS offered on listen" if tls.starttls else "no STARTTLS on listen"
    transports = [f"{name} -> {spec}" for name, spec in sorted(config.transports.items())]
    metrics = config.admin.metrics_listen
    rows = [
        ("hostname", config.hostname),
        ("listen", ", ".join(str(a) for a in config.listen)),
        ("submission", _listeners(config.submission_listen, "STARTTLS, then AUTH")),
        ("submissions", _listeners(config.submissions_listen, "implicit TLS, then AUTH")),
        ("pop3", _listeners(config.pop3.listen, "STLS, then USER/PASS or AUTH")),
        ("pop3s", _listeners(config.pop3.tls_listen, "implicit TLS, then USER/PASS or AUTH")),
        ("tls", f"{certificate}; {tls.min_version} or later; {starttls}"),
        ("domains", ", ".join(domains) or "none (no local delivery)"),
        ("relay networks", ", ".join(str(n) for n in config.relay_networks) or "none"),
        ("aliases", aliases),
        ("transports", ", ".join(transports) or "none"),
        ("plugins", ", ".join(f"{p.name} ({p.source})" for p in config.plugins) or "none"),
        ("milters", ", ".join(f"{m.name} ({m.socket})" for m in config.milters) or "none"),
        ("webhooks", ", ".join(w.url for w in config.webhooks) or "none"),
        ("dkim", f"signing with the keys in {config.dkim_key_dir}" if config.dkim.sign else "off"),
        ("relay host", str(config.delivery.relay_host or "none (direct delivery by MX)")),
        ("metrics", f"http://{metrics}/metrics" if metrics is not None else "off"),
        ("control socket", str(config.control_socket)),
        ("data dir", str(config.data_dir)),
        ("log", f"{config.log.format}, {config.log.level}, to {config.log.file or 'stderr'}"),
    ]
    return [f"  {label + ':':<15} {value}" for label, value in rows]


def tls_problems(config: Config, source: str) -> list[ConfigError]:
    """The start-up checks of a configured certificate and key, as ConfigErrors naming the key."""
    tls = config.tls
    if tls.cert_file is None or tls.key_file is None:
        return []  # a self-signed default is made at start-up
    from pigeon.net.tls import TlsError, build_context, check_certificate

    try:
        # The same checks as start-up: readable, parsable, valid now, key
        # matching the certificate.
        check_certificate(tls.cert_file)
        build_context(tls, tls.cert_file, tls.key_file)
    except TlsError as exc:
        text = str(exc)
        key = (
            "tls.ciphers"
            if text.startswith("tls.ciphers:")
            else "tls.key_file"
            if text.startswith(f"{tls.key_file}:")
            else "tls.cert_file"
        )
        return [ConfigError(key, text.removeprefix("tls.ciphers: "), source)]
    return []


def dkim_problems(config: Config, source: str) -> list[ConfigError]:
    """The DKIM keys read as start-up reads them (pigeon.signing.keys)."""
    from pigeon.signing.signer import signer_for

    return _read_as_start_up(signer_for, config, source)


def webhook_problems(config: Config, source: str) -> list[ConfigError]:
    """The webhooks' secret files read as start-up reads them (pigeon.webhooks.service)."""
    from pigeon.webhooks.service import endpoints

    return _read_as_start_up(endpoints, config, source)


def _read_as_start_up(
    read: Callable[[Config], object], config: Config, source: str
) -> list[ConfigError]:
    """`read(config)`'s ConfigError, if any, as the problem of `source`."""
    try:
        read(config)
    except ConfigError as exc:
        exc.source = source
        return [exc]
    return []


def plugin_problems(config: Config, source: str) -> list[ConfigError]:
    """The `[[plugins]]` loaded as start-up loads them (code imported, own
    table checked against the plugin's settings): what would refuse it."""
    from pigeon.hooks.load import load_plugins

    try:
        load_plugins(config)
    except ConfigError as exc:
        for problem in exc.problems:
            problem.source = source
        return exc.problems
    return []


def run(args: argparse.Namespace) -> int:
    args.file = locate(args.file).path
    if args.file is None:
        return fail(
            f"no configuration file to check: give FILE, set ${CONFIG_ENV}, "
            f"or install {SYSTEM_CONFIG}",
            EX_CONFIG,
        )
    config, problems = collect_config(args.file)
    source = str(args.file)
    refused = {p.key for p in problems}
    if config is not None and not refused & {"tls.cert_file", "tls.key_file", "tls.ciphers"}:
        problems += tls_problems(config, source)
    if config is not None and not any(p.key and p.key.startswith("dkim") for p in problems):
        problems += dkim_problems(config, source)
    if config is not None and not any(p.key and p.key.startswith("webhooks") for p in problems):
        problems += webhook_problems(config, source)
    if (
        config is not None
        and config.plugins
        and not any(p.key and p.key.startswith("plugins") for p in problems)
    ):
        problems += plugin_problems(config, source)
    locator = None
    if config is not None:
        locator = KeyLocator(args.file.read_text(encoding="utf-8"))
        for problem in problems:
            if problem.line is None and problem.key and problem.source == source:
                problem.line = locator.line_of(problem.key)
    if problems:
        return fail(str(ConfigErrors(problems)), EX_CONFIG)
    assert config is not None and locator is not None
    for risk in risks(config):
        line = locator.line_of(risk.key)
        where = f"{source}:{line}" if line is not None else source
        print(f"{PROG}: {where}: warning: {risk.key}: {risk.message}", file=sys.stderr)
    shown, notes = _with_shared_entries(config)
    for note in notes:
        print(f"{PROG}: {source}: warning: {note}", file=sys.stderr)
    print(f"ok: {args.file}")
    for row in summary(shown, config):
        print(row)
    return 0


def _with_shared_entries(config: Config) -> tuple[Config, list[str]]:
    """`config` with the cluster's shared domains and aliases, and the warnings."""
    from pigeon.store.factory import shared, with_shared_directory  # noqa: PLC0415

    if not shared(config):
        return config, []
    try:
        return with_shared_directory(config)
    except StoreError as exc:
        return config, [
            f"queue.store: the shared domains and aliases could not be read ({exc}); "
            "the summary shows this file's only, and `pigeon serve` would not start (73)"
        ]
