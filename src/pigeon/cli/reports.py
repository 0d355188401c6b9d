"""`pigeon reports send [--now]`: make the running server send its aggregate reports.

Contract:
  * Asks the running server, through its control socket, for the
    "reports" operation (app/reportjob.py): the DMARC aggregate (RFC 7489
    §7.2) and TLS-RPT (RFC 8460) reports of the records stored so far are
    made, their destinations looked up in DNS, and the reports queued as
    mail from `[reports] from`. Without `--now`: the records of the periods
    that have ended (what the server's own job sends at each period's end);
    with `--now`: every record up to this instant (the current period too).
    Which server: as for `pigeon reload` (-c/--config, --data-dir).
  * Output: one line "reports: N DMARC, M TLS-RPT report(s) queued from R
    record(s)", then the queue ids ("queued: ..."), and the https: URLs
    that took a TLS-RPT report ("posted: ...", RFC 8460 §3), on stdout; each note (a domain without
    destination, a URI skipped, a report over a size limit) as a
    "pigeon: note: ..." line on stderr.
  * Exit status (sysexits.h): 0 done (even when nothing was due); 69
    (EX_UNAVAILABLE) pigeon is not running; 78 (EX_CONFIG) reports are off
    in the running server ([reports] dmarc and tls both false).
"""

from __future__ import annotations

import argparse

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._control import EX_UNAVAILABLE, add_config_arguments
from pigeon.cli.reload import _server_config as server_config
from pigeon.config.load import ConfigError

HELP = "send the aggregate DMARC and TLS-RPT reports now"

DESCRIPTION = """\
Ask the running pigeon to make its aggregate reports (DMARC, RFC 7489;
TLS-RPT, RFC 8460) from the results it has stored and queue them to each
domain's rua= address, as it does itself at the end of every period
([reports] interval, a day by default, ending at 00:00 UTC). Without
--now only the periods that have ended are reported; --now reports
everything stored up to now.
"""

EPILOG = """\
examples:
  pigeon reports send --now
      reports: 2 DMARC, 1 TLS-RPT report(s) queued from 340 record(s)
      queued: 4Xk2P9aB1c 4Xk2P9aB1d 4Xk2P9aB1e

exit status: 0 done, 69 pigeon is not running, 78 reports are off.
"""

#: Looking up every domain's destinations may take a while.
TIMEOUT = 600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = actions.add_parser(
        "send",
        help="make and queue the reports",
        description=DESCRIPTION,
    )
    send.add_argument(
        "--now",
        action="store_true",
        help="report every record up to now, the current period included",
    )
    add_config_arguments(send, nested=True)


def run(args: argparse.Namespace) -> int:
    try:
        config = server_config(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:
        answer = ControlClient(config.control_socket, timeout=TIMEOUT).call(
            "reports", now=bool(args.now)
        )
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:
        if "reports are off" in str(exc):
            return fail(str(exc), EX_CONFIG)
        return fail(f"reports failed: {exc}", EX_UNAVAILABLE)
    for note in answer.get("notes", []):
        fail(f"note: {note}", 0)
    print(
        f"reports: {answer.get('dmarc', 0)} DMARC, {answer.get('tls', 0)} TLS-RPT report(s) "
        f"queued from {answer.get('records', 0)} record(s)"
    )
    if answer.get("queued"):
        print("queued: " + " ".join(answer["queued"]))
    if answer.get("posted"):
        print("posted: " + " ".join(answer["posted"]))
    return 0
