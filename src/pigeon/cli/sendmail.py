"""`sendmail` / `pigeon sendmail`: the sendmail(1) interface applications pipe mail into.

Contract:
  * The message is read from standard input and queued LOCALLY, without the
    network: written through `QueueStore` into data_dir (same fsync'ed
    group commit as SMTP mail; SQLite WAL lets this second process share
    the database), fixed up as Postfix's cleanup does for local mail
    (pigeon.admin.localsubmit), then the running server is nudged over the
    control socket. If pigeon is not running the message waits in the
    queue and goes out when it starts; that is not an error.
  * Flags (sendmail/Postfix compatible):
      -t           recipients from To/Cc/Bcc (added to those given); Bcc removed
      -i, -oi      a line with a single "." does not end the message
      -f SENDER    envelope sender ("" or "<>": the null sender); also -r
      -F NAME      full name for an added From: field
      -bm          read a message and queue it (the default)
      -bs          SMTP on stdin/stdout (pigeon.admin.stdio_smtp)
      -bp          list the queue (= pigeon queue list)     [also: mailq]
      -q           flush the queue (= pigeon queue flush); intervals ignored
      -bi          newaliases: nothing to do (aliases live in the configuration)
      -C FILE      configuration file
      -o*, -B T, -N D, -R R, -V E, -O O, -X F, -h N, -L L, -v, -n, -m, -U, -G, -e*
                   accepted and ignored, for compatibility
    Anything else (e.g. -bd) is a usage error.
  * Configuration: -C FILE, else $PIGEON_CONFIG, else ./pigeon.toml, else
    the built-in defaults (cli._control).
  * Errors: one line "sendmail: ..." on stderr and a sysexits.h status:
    64 EX_USAGE (bad flag, no recipients), 65 EX_DATAERR (message too
    big), 67 EX_NOUSER (bad address), 70 EX_SOFTWARE (a bug), 73
    EX_CANTCREAT / 77 EX_NOPERM (queue not writable), 75 EX_TEMPFAIL (queue
    write failed: try again), 78 EX_CONFIG (bad configuration).
  * `pigeon sendmail ...` takes the same flags: its argparse parser is made
    to pass every argument through untouched (sendmail flags are not
    GNU-style), and `run` parses them here.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn, TextIO

from pigeon.admin import localsubmit as L
from pigeon.cli._control import config_path

HELP = "sendmail(1) compatible: queue a message read from stdin (-t -i -f -bs -bp -q)"

DESCRIPTION = """\
Read a message on standard input and queue it for delivery, without the
network, like Postfix's and Sendmail's sendmail command. Recipients are
the arguments, and/or (with -t) the To, Cc and Bcc fields; Bcc fields are
removed. Missing From, Date and Message-ID fields are added. The running
pigeon is told at once; if it is not running, the message waits in the
queue until it starts.

usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-C FILE] [RECIPIENT...]
       sendmail -bs | -bp | -q | -bi

  -t         take recipients from To/Cc/Bcc (Bcc is removed)
  -i, -oi    a line with a single "." does not end the message
  -f SENDER  envelope sender ("<>": null sender; default: your login name)
  -F NAME    full name for the From field pigeon adds
  -bs        speak SMTP on stdin/stdout (any recipient is accepted)
  -bp        list the queue;  -q  flush the queue
  -C FILE    configuration (default: $PIGEON_CONFIG, ./pigeon.toml, built-in)
  -o..., -B, -N, -R, -V, -O, -X, -h, -L, -v ...  ignored, for compatibility
"""

EPILOG = """\
examples:
  printf 'To: bob@example.org\\nSubject: hi\\n\\nhello\\n' | sendmail -t -i
  sendmail -f alerts@example.test -F "Cron Daemon" admin@example.test < report.txt
  php.ini:  sendmail_path = "/usr/local/bin/sendmail -t -i"

exit status (sysexits.h): 0 queued, 64 usage, 65 data error, 67 bad address,
70 internal error, 73/77 queue not writable, 75 temporary failure, 78 bad configuration.
"""

PROG = "sendmail"
_IGNORED_WITH_ARG = {"-B", "-N", "-R", "-V", "-O", "-X", "-h", "-L"}
_IGNORED_FLAGS = {"-v", "-n", "-m", "-U", "-G", "-x", "-bm"}


@dataclass
class Options:
    mode: str = "deliver"                   # deliver | smtp | list | flush | newaliases | help
    extract: bool = False
    ignore_dots: bool = False
    sender: str | None = None
    fullname: str = ""
    config: Path | None = None
    recipients: list[str] = field(default_factory=list)


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> Options:
    """sendmail's command line (see the contract); UsageError for anything unknown."""
    o = Options()
    i = 0

    def value(flag: str) -> str:
        nonlocal i
        arg = argv[i]
        if len(arg) > len(flag):
            return arg[len(flag):]
        i += 1
        if i >= len(argv):
            raise UsageError(f"option {flag} needs an argument")
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            o.recipients += argv[i + 1:]
            break
        if arg in ("--help", "-?"):
            o.mode = "help"
        elif not arg.startswith("-") or arg == "-":
            o.recipients.append(arg)
        elif arg == "-t":
            o.extract = True
        elif arg in ("-i", "-oi"):
            o.ignore_dots = True
        elif arg.startswith(("-f", "-r")):
            o.sender = value(arg[:2])
        elif arg.startswith("-F"):
            o.fullname = value("-F")
        elif arg.startswith("-C"):
            o.config = Path(value("-C"))
        elif arg == "-bs":
            o.mode = "smtp"
        elif arg == "-bp":
            o.mode = "list"
        elif arg == "-bi":
            o.mode = "newaliases"
        elif arg.startswith("-q"):
            o.mode = "flush"
        elif arg.startswith(("-o", "-e")) or arg in _IGNORED_FLAGS:
            pass
        elif arg[:2] in _IGNORED_WITH_ARG:
            value(arg[:2])
        elif arg.startswith("-b"):
            raise UsageError(f"mode {arg} is not supported (pigeon runs as 'pigeon serve')")
        else:
            raise UsageError(f"unknown option {arg}")
        i += 1
    return o


def read_message(stream: BinaryIO, ignore_dots: bool) -> bytes:
    """Standard input up to EOF, or (without -i) up to a line holding a single "."."""
    if ignore_dots:
        return stream.read()
    out = []
    for line in iter(stream.readline, b""):
        if line.rstrip(b"\r\n") == b"." and line.endswith(b"\n"):
            break
        out.append(line)
    return b"".join(out)


def _err(message: str, code: int, stderr: TextIO) -> int:
    print(f"{PROG}: {message}", file=stderr)
    return code


def run_argv(argv: list[str], *, stdin: BinaryIO | None = None, stderr: TextIO | None = None,
             environ: dict | None = None) -> int:
    """The whole sendmail command; returns the exit status."""
    stderr = stderr or sys.stderr
    try:
        opts = parse(argv)
    except UsageError as exc:
        return _err(f"{exc} (see: pigeon sendmail --help)", L.EX_USAGE, stderr)
    if opts.mode == "help":
        print(DESCRIPTION + "\n" + EPILOG)
        return 0
    if opts.mode == "newaliases":
        print(f"{PROG}: aliases are part of the pigeon configuration; nothing to rebuild")
        return 0
    from pigeon.config.load import ConfigError, load_config
    try:
        config = load_config(config_path(opts.config, environ))
    except ConfigError as exc:
        return _err(str(exc), L.EX_CONFIG, stderr)
    if opts.mode in ("list", "flush"):
        from pigeon.cli import queue as queue_cli
        ns = argparse.Namespace(config=config_path(opts.config, environ), data_dir=None,
                                json=False)
        if opts.mode == "list":
            ns.action, ns.state, ns.domain, ns.sender, ns.older_than = "list", None, None, None, None
        else:
            ns.action, ns.domain = "flush", None
        return queue_cli.run(ns)
    try:
        return _submit(opts, config, stdin or sys.stdin.buffer, stderr)
    except L.SubmitError as exc:
        return _err(str(exc), exc.code, stderr)
    except Exception as exc:             # a bug: say so with the right status
        return _err(f"internal error: {exc!r}", L.EX_SOFTWARE, stderr)


def _submit(opts: Options, config, stdin: BinaryIO, stderr: TextIO) -> int:
    from pigeon.config.load import session_config
    from pigeon.queue.store import QueueStore, StoreError
    from pigeon.routing.resolve import Router

    domain = Router(config).primary_domain
    login = _login_name()
    if opts.sender is None:
        sender = f"{login}@{domain}"
    elif opts.sender.strip() in ("", "<>"):
        sender = ""
    else:
        sender = L.normalize_address(opts.sender, domain)
    if opts.mode == "deliver":
        raw = read_message(stdin, opts.ignore_dots)
        prepared = L.prepare(raw, recipients=opts.recipients, extract=opts.extract, sender=sender,
                             fullname=opts.fullname, hostname=config.hostname, domain=domain)
    store = QueueStore(config.queue_dir, fsync=config.queue.fsync)
    try:
        store.open()
    except PermissionError as exc:
        raise L.SubmitError(f"cannot write the queue {config.queue_dir}: {exc.strerror} "
                            "(run sendmail as the pigeon user)", L.EX_NOPERM) from None
    except (OSError, StoreError) as exc:
        raise L.SubmitError(f"cannot open the queue {config.queue_dir}: {exc}",
                            L.EX_CANTCREAT) from None
    try:
        if opts.mode == "smtp":
            from pigeon.admin.stdio_smtp import run_stdio_session
            ids = run_stdio_session(store, session_config(config), fd_in=stdin.fileno(),
                                    fd_out=sys.stdout.fileno())
        else:
            env = L.enqueue(store, prepared, sender=sender, hostname=config.hostname,
                            uid=os.getuid(), now=_now(), max_size=config.limits.message_size)
            ids = [env.queue_id]
    finally:
        store.close()
    _nudge(config, ids)
    return 0


def _now() -> float:
    import time
    return time.time()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def _nudge(config, ids: list[str]) -> None:
    """Tell the running server (if any) about the new mail; silent if it is not running."""
    if not ids:
        return
    from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
    try:
        ControlClient(config.control_socket, timeout=10.0).call("nudge", ids=ids,
                                                                 uid=os.getuid())
    except (ControlUnavailable, RemoteError):
        pass


# --- `pigeon sendmail` ---------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    # sendmail flags are not GNU-style (-oi, -fSENDER, -bs): make this
    # parser treat every argument as a positional and parse them in run().
    parser.prefix_chars = "\0"
    parser.add_argument("argv", nargs="*", help="sendmail flags and recipients (see above)")


def run(args: argparse.Namespace) -> int:
    return run_argv(list(args.argv))


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point `sendmail`."""
    sys.exit(run_argv(sys.argv[1:] if argv is None else argv))
