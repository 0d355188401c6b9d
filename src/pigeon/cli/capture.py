"""`pigeon capture list|show|release|delete`: captured mail (docs/capture.md).

Contract:
  * Every action goes to the running server over the control socket
    (pigeon.admin.control, the operations of admin/capture.py): the same
    answers the HTTP API gives; release and delete are the queue
    manager's. There is no offline mode: with pigeon stopped every action
    fails with 69 (EX_UNAVAILABLE).
  * `list [--tenant T] [--search TEXT] [--json]`: one line per message,
    newest first (ID, tenant, age, sender, recipients, subject). `show ID`:
    envelope, header fields, the text body (`--raw`: the message as
    received, on stdout). `release ID...`, `delete ID...`: a summary line.
  * Exit statuses: 0 ok, 64 usage, 65 pigeon refused the request or an id
    is not a captured message, 69 pigeon not running, 77 permission
    denied, 78 configuration error.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time

from pigeon.admin.client import ControlForbidden, ControlUnavailable, RemoteError
from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import (
    EX_DATAERR,
    EX_NOPERM,
    EX_UNAVAILABLE,
    add_config_arguments,
    connect,
    human_age,
    load,
)
from pigeon.config.load import ConfigError

HELP = "list, read, release and delete captured mail (capture mode)"

DESCRIPTION = """\
Captured mail (docs/capture.md): accepted through a capture listener,
from a capture account or to a capture domain, kept and never delivered
until released. Asks the running pigeon through its control socket.

actions:
  list              captured messages, newest first
  show ID           envelope, header fields and text of one message
  release ID...     hand the messages to the real queue (delivered,
                    retried and bounced like any other mail)
  delete ID...      remove them
"""

EPILOG = """\
examples:
  pigeon capture list --tenant ci@dev.example --search "password reset"
  pigeon capture show 5F3A1C0E2B7D0001 --raw > message.eml
  pigeon capture release 5F3A1C0E2B7D0001

exit status: 0 ok, 64 usage error, 65 request refused or an ID that is not
a captured message, 69 pigeon not running, 77 permission denied, 78
configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list captured messages")
    add_config_arguments(lst, nested=True)
    lst.add_argument("--tenant", metavar="TENANT", help="only this tenant's messages")
    lst.add_argument(
        "--search", metavar="TEXT", help="in the sender, recipients, From, To, Subject"
    )
    lst.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="one captured message")
    add_config_arguments(show, nested=True)
    show.add_argument("id", metavar="ID")
    show.add_argument("--raw", action="store_true", help="the message as received")
    show.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("release", "release into the queue"), ("delete", "delete")):
        p = sub.add_parser(name, help=f"{text} captured messages")
        add_config_arguments(p, nested=True)
        p.add_argument("ids", metavar="ID", nargs="+")
        p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:
        client = connect(config)
        if args.action == "list":
            result = client.call(
                "capture_list", tenant=args.tenant, q=args.search, limit=1000, offset=0
            )
            _print_list(result, args.json)
            return 0
        if args.action == "show":
            if args.raw:
                got = client.call("capture_raw", id=args.id)
                sys.stdout.buffer.write(base64.b64decode(got["raw"]))
                return 0
            view = client.call("capture_show", id=args.id)
            _print_show(view, args.json)
            return 0
        result = client.call(f"capture_{args.action}", ids=args.ids)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            verb = "released" if args.action == "release" else "deleted"
            print(f"{verb} {len(result['done'])}; {len(result['unknown'])} not captured")
        return EX_DATAERR if result["unknown"] else 0
    except ControlForbidden as exc:
        return fail(str(exc), EX_NOPERM)
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:
        return fail(str(exc), EX_DATAERR)
    except ValueError as exc:
        return fail(str(exc), EX_USAGE)


def _clean(text: str) -> str:
    """Nothing from the network reaches a terminal unescaped (CONTRIBUTING.md, rule 17)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _print_list(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    now = time.time()
    for e in result["entries"]:
        age = human_age(max(0.0, now - e["received_at"]))
        rcpts = ",".join(e["recipients"])
        line = f"{e['id']}  {e['tenant']}  {age}  <{e['sender']}> -> {rcpts}  {e['subject']}"
        print(_clean(line))
    print(f"-- {result['total']} captured message(s)")


def _print_show(view: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, indent=2))
        return
    print(_clean(f"id: {view['id']}  tenant: {view['tenant']}  size: {view['size']}"))
    print(_clean(f"envelope: <{view['sender']}> -> {', '.join(view['recipients'])}"))
    for name, value in view["headers"]:
        print(_clean(f"{name}: {value}"))
    print()
    text = view["text"] if view["text"] is not None else "(no text part)"
    for line in text.splitlines():
        print(_clean(line))
    for a in view["attachments"]:
        print(_clean(f"[attachment] {a['filename']} ({a['content_type']}, {a['size']} octets)"))
