"""`pigeon queue list|show|flush|hold|release|delete|bounce|requeue`: the mail queue.

Contract:
  * Actions go to the running server over the control socket
    (pigeon.admin.control): the queue manager performs them, so they never
    race a delivery. `list` and `show` fall back to reading the store when
    pigeon is not running (and say so on stderr); actions then fail with
    69 (EX_UNAVAILABLE).
  * `rebuild` works on the store itself, with pigeon stopped
    (pigeon.cli._rebuild has its contract and exit statuses).
  * Ids are given as arguments or `--all`. Big selections are sent in
    batches of BATCH ids with a progress bar on a TTY (cli._control.Progress).
  * Output: a Postfix mailq-like table (or `--json`, one JSON document:
    the server's result, field names stable); one summary line per action
    ("held 3; 1 being delivered, held when that attempt ends; 0 skipped").
  * Exit statuses: 0 ok (also when some ids were skipped because of their
    state, which the summary says), 64 usage error, 65 pigeon refused the
    request or a named id is not in the queue (`show`, and every action
    given ids: the others are still acted on), 69 pigeon not running (for
    actions), 77 this user may not use the control socket or read the
    store, 78 configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pigeon.admin.client import ControlForbidden, ControlUnavailable, OfflineQueue, RemoteError
from pigeon.admin.query import parse_age
from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import (
    EX_DATAERR,
    EX_NOPERM,
    EX_UNAVAILABLE,
    Progress,
    add_config_arguments,
    connect,
    human_age,
    human_size,
    load,
)
from pigeon.config.load import ConfigError

HELP = "list, inspect and act on queued mail (hold, release, delete, bounce, flush)"

DESCRIPTION = """\
Look at the mail queue and act on it. Actions are carried out by the
running pigeon (through its control socket, data_dir/control.sock), so
they never race a delivery in progress; a message being delivered at that
moment is acted on when its attempt ends.

actions:
  list              every queued message: ID, size, arrival, sender,
                    recipients, state and the reason of the last deferral
  show ID           envelope, headers and delivery history of one message
  flush [DOMAIN]    deferred mail (for DOMAIN) is retried now; destinations
                    marked dead after repeated failures get another chance
  hold ID...|--all  stop delivering the messages until released
  release ID...|--all
  delete ID...|--all  remove without telling anybody (like postsuper -d)
  bounce ID...      return to the sender with a delivery status
                    notification (5.0.0), then remove
  requeue ID...|--all  retry now as new mail (like postsuper -r)
  rebuild [--from-files]  pigeon stopped: rebuild the queue database from
                    the message files (after a restore or a damaged queue.db)

"list" and "show" also work while pigeon is stopped (they read the store).
"""

EPILOG = """\
examples:
  pigeon queue list --state deferred --domain example.org
  pigeon queue list --older-than 2h --json | jq -r '.entries[].id'
  pigeon queue show 5F3A1C0E2B7D0001
  pigeon queue hold --all
  pigeon queue flush example.org
  pigeon queue delete 5F3A1C0E2B7D0001 5F3A1C0E2B7D0002

states: incoming (new), active (being delivered), deferred (waiting for a
retry), hold (by an operator), corrupt (unreadable, kept for inspection),
capture (captured mail: pigeon capture, docs/capture.md).

exit status: 0 ok, 64 usage error, 65 request refused or a queue ID that
is not in the queue, 69 pigeon not running (for actions), 77 permission
denied (run as root or the pigeon user), 78 configuration error; list,
show and rebuild: 73 damaged queue database (use rebuild --from-files) or
one of a newer format than this pigeon's; rebuild: 75 pigeon is running.
"""

BATCH = 500
_STATE_MARK = {"active": "*", "hold": "!", "corrupt": "#", "capture": "@"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list queued messages")
    add_config_arguments(lst, nested=True)
    lst.add_argument(
        "--state", choices=("incoming", "active", "deferred", "hold", "corrupt", "capture")
    )
    lst.add_argument(
        "--domain",
        metavar="DOMAIN",
        help='with a recipient still to deliver at DOMAIN (".DOMAIN": subdomains)',
    )
    lst.add_argument("--sender", metavar="TEXT", help='sender contains TEXT ("<>": null sender)')
    lst.add_argument(
        "--older-than", metavar="AGE", help="arrived more than AGE ago: 90, 15m, 2h, 3d"
    )
    lst.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="envelope, headers and history of one message")
    add_config_arguments(show, nested=True)
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    flush = sub.add_parser("flush", help="retry deferred mail now")
    add_config_arguments(flush, nested=True)
    flush.add_argument("domain", metavar="DOMAIN", nargs="?")
    flush.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (
        ("hold", "put messages on hold"),
        ("release", "release held messages"),
        ("delete", "delete messages"),
        ("requeue", "retry messages now"),
        ("bounce", "return messages to their senders"),
    ):
        p = sub.add_parser(name, help=text)
        add_config_arguments(p, nested=True)
        p.add_argument("ids", metavar="ID", nargs="*")
        if name != "bounce":
            p.add_argument("--all", action="store_true", help="every message it applies to")
        p.add_argument("--json", action="store_true", help="print JSON")
    rebuild = sub.add_parser(
        "rebuild", help="rebuild the queue database from the message files (pigeon must be stopped)"
    )
    rebuild.add_argument(
        "--from-files",
        action="store_true",
        help="move queue.db aside (damaged or not) and start from the files",
    )
    # Also after the action, as the store's repair hint writes it.
    add_config_arguments(rebuild, nested=True)


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    if args.action == "rebuild":  # offline, see pigeon.cli._rebuild
        from pigeon.cli._rebuild import run_rebuild

        return run_rebuild(config, args)
    readonly = args.action in ("list", "show")
    try:
        client = connect(config, offline_ok=readonly)
        if isinstance(client, OfflineQueue):
            print("pigeon: not running; reading the queue store directly", file=sys.stderr)
        if args.action == "list":
            return _list(client, args)
        if args.action == "show":
            return _show(client, args)
        if args.action == "flush":
            result = client.call("flush", domain=args.domain)
            _print_result(
                args,
                result,
                f"flushed {len(result['done'])} deferred message(s)"
                + (f" for {args.domain}" if args.domain else ""),
            )
            return 0
        return _act(client, args)
    except ControlForbidden as exc:
        return fail(str(exc), EX_NOPERM)
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:
        return fail(str(exc), EX_DATAERR)
    except ValueError as exc:
        return fail(str(exc), EX_USAGE)


def _filters(args: argparse.Namespace) -> dict:
    out: dict = {}
    for key in ("state", "domain", "sender"):
        if getattr(args, key):
            out[key] = getattr(args, key)
    if args.older_than:
        out["older_than"] = parse_age(args.older_than)
    return out


def _list(client, args: argparse.Namespace) -> int:
    result = client.call("list", filters=_filters(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    entries = result["entries"]
    if not entries:
        print("Mail queue is empty")
        return 0
    # A shared queue's IDs are 17 characters (store/pg/nodes.py): the column grows.
    w = max(17, *(len(e["id"]) + 1 for e in entries))
    print(
        f"{'-Queue ID-':<{w}} {'--Size--':>8} {'----Arrival Time----':<20} {'-State-':<9} "
        f"-Sender/Recipient-------"
    )
    total = 0
    for e in entries:
        mark = _STATE_MARK.get(e["state"], "")
        if not e.get("readable"):
            print(f"{e['id'] + mark:<{w}} {'?':>8} {'?':<20} {e['state']:<9} (unreadable envelope)")
            continue
        total += e["size"]
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(e["arrival"]))
        print(
            f"{e['id'] + mark:<{w}} {e['size']:>8} {arrival:<20} {e['state']:<9} "
            f"{e['sender'] or '<>'}"
        )
        if e["reason"]:
            print(f"{'':<{w}} ({e['reason']})")
        for r in e["recipients"]:
            if r["status"] in ("delivered", "bounced"):
                continue  # mailq shows what is still to do
            print(f"{'':<{w + 40}} {r['address']}")
        print()
    print(f"-- {human_size(total)} in {len(entries)} message{'s' if len(entries) != 1 else ''}.")
    return 0


def _show(client, args: argparse.Namespace) -> int:
    r = client.call("show", id=args.id)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"Queue ID:   {r['id']}")
    print(f"State:      {r['state']}")
    if r.get("readable"):
        env = r["envelope"]
        print(
            f"Arrival:    {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(r['arrival']))}"
            f" ({human_age(r['age'])} ago)"
        )
        print(f"Size:       {r['size']} octets")
        print(f"Sender:     <{r['sender']}>")
        client_ip = env.get("client_address") or "local"
        print(
            f"Client:     {client_ip} helo={env.get('client_helo') or '-'} "
            f"proto={env.get('protocol')}"
        )
        print(f"Attempts:   {r['attempts']}")
        if r.get("next_attempt"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["next_attempt"]))
            print(f"Next try:   {when}")
        if r.get("dsn_kind"):
            print(f"Report:     {r['dsn_kind']} notification generated by pigeon")
        print("Recipients:")
        for rc in env["recipients"]:
            extra = f" (alias of {rc['original']})" if rc.get("original") else ""
            print(f"  <{rc['address']}>{extra}: {rc['status']}")
            if rc.get("diagnostic"):
                relay = f" via {rc['remote_mta']}" if rc.get("remote_mta") else ""
                print(f"      {rc.get('dsn_status', '')} {rc['diagnostic']}{relay}".rstrip())
    print("Headers:")
    if r.get("headers") is None:
        print(f"  (content unreadable: {r.get('headers_error', 'missing')})")
    else:
        for line in r["headers"].splitlines():
            print(f"  {line}")
    if r.get("history"):
        print("History (log):")
        for line in r["history"]:
            print(f"  {line}")
    return 0


def _act(client, args: argparse.Namespace) -> int:
    action = args.action
    use_all = getattr(args, "all", False)
    if use_all and args.ids:
        return fail("give queue IDs or --all, not both", EX_USAGE)
    if not use_all and not args.ids:
        return fail(
            f"{action}: give one or more queue IDs" + ("" if action == "bounce" else " or --all"),
            EX_USAGE,
        )
    ids = list(args.ids)
    if use_all:
        ids = [e["id"] for e in client.call("list", filters={})["entries"]]
    total: dict[str, list[Any]] = {"done": [], "pending": [], "skipped": [], "unknown": []}
    bar = Progress(action, len(ids))
    with client:
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            result = client.call(action, ids=chunk)
            for key in total:
                total[key] += result.get(key, [])
            bar.advance(len(chunk))
    bar.finish()
    verb = {
        "hold": "held",
        "release": "released",
        "delete": "deleted",
        "requeue": "requeued",
        "bounce": "bounced",
    }[action]
    text = f"{verb} {len(total['done'])}"
    if total["pending"]:
        text += (
            f"; {len(total['pending'])} being delivered, {verb} when that attempt ends "
            "(if still queued)"
        )
    if total["skipped"]:
        text += f"; {len(total['skipped'])} skipped (not queued, or not in a state for {action})"
    _print_result(args, total, text)
    if total["unknown"] and not use_all:
        # Named ids that are not queued: the operator's mistake, said and
        # reported like `show` does (65). With --all they only vanished
        # (delivered) between the listing and the action.
        return fail(f"not in the queue: {' '.join(total['unknown'])}", EX_DATAERR)
    return 0


def _print_result(args: argparse.Namespace, result: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print(text)
