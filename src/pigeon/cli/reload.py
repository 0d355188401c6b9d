"""`pigeon reload`: make the running pigeon re-read its configuration, and say how it went.

Contract:
  * Asks the running server, through its control socket, to reload (the
    "reload" operation: the same as SIGHUP, pigeon.app.reload). Which server:
    the configuration found as for the other control commands
    (cli._control: -c/--config, --data-dir) tells where the control socket
    is; only `data_dir` and `[admin] control_socket` need to be valid there
    (the file being reloaded may be broken: the server reports that). The
    server re-reads ITS file with ITS command-line flags, not the file
    named here.
  * Output and exit status (sysexits.h):
      - 0: applied ("reload: applied KEYS", "reload: KEYS take effect at
        the next restart") or unchanged ("reload: configuration
        unchanged"), on stdout. A listener of the new configuration that
        could not be bound is a "pigeon: warning: ..." line on stderr.
      - 78 (EX_CONFIG): refused. "pigeon: reload refused, the running
        configuration stays in force:" then every problem, one line each
        ("pigeon: FILE:LINE: key: message"), on stderr.
      - 69 (EX_UNAVAILABLE): pigeon is not running (nothing answers on the
        control socket), or it cannot reload; the reason on stderr.
"""

from __future__ import annotations

import argparse

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._control import EX_UNAVAILABLE, add_config_arguments, config_path
from pigeon.config.load import ConfigError, ConfigErrors, collect_config
from pigeon.config.schema import Config

HELP = "make the running server re-read its configuration"

DESCRIPTION = """\
Ask the running pigeon to load its configuration again (the same as
SIGHUP) and print the outcome: the keys applied, those that wait for a
restart, or, when the file does not load, every problem with its line; the
running configuration then stays in force. The server re-reads its own file
with its own command-line flags; -c/--data-dir only say which pigeon to ask
(where its control socket is).
"""

EPILOG = """\
examples:
  pigeon reload
      reload: applied domains, limits.message_size
  pigeon reload -c /etc/pigeon/pigeon.toml
      pigeon: reload refused, the running configuration stays in force:
      pigeon: /etc/pigeon/pigeon.toml:12: limits.mesage_size: unknown key (did you mean "message_size"?)

exit status: 0 applied (or nothing changed), 78 refused (the file has
errors), 69 pigeon is not running.
"""

#: A reload re-reads certificates and may bind listeners: give it time.
TIMEOUT = 120.0

#: The keys that say where the control socket is.
_PLACES_SOCKET = frozenset({"data_dir", "admin.control_socket", "admin"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def _server_config(args: argparse.Namespace) -> Config:
    """The configuration that says where the control socket is. Only the keys
    that place it must be valid: the file being reloaded may well be broken,
    and the server is the one to report that."""
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    config, problems = collect_config(config_path(args.config), overrides)
    if config is None or any(p.key in _PLACES_SOCKET for p in problems):
        raise ConfigErrors(problems)
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = _server_config(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:
        outcome = ControlClient(config.control_socket, timeout=TIMEOUT).call("reload")
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:  # e.g. a pigeon too old to know "reload"
        return fail(f"reload failed: {exc}", EX_UNAVAILABLE)
    if outcome.get("status") == "refused":
        return fail(
            "\n".join(
                [
                    "reload refused, the running configuration stays in force:",
                    *outcome.get("errors", []),
                ]
            ),
            EX_CONFIG,
        )
    if outcome.get("applied"):
        print(f"reload: applied {', '.join(outcome['applied'])}")
    if outcome.get("restart"):
        print(f"reload: {', '.join(outcome['restart'])} take effect at the next restart")
    if outcome.get("status") == "unchanged":
        print("reload: configuration unchanged")
    for warning in outcome.get("warnings", []):
        fail(f"warning: {warning}", 0)
    return 0
