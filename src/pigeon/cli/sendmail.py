"""`sendmail` / `pigeon sendmail`: the sendmail(1) interface applications pipe mail into.

Contract:
  * The message is read from standard input and queued LOCALLY, without the
    network, fixed up as Postfix's cleanup does for local mail
    (pigeon.admin.localsubmit). Two ways, by who runs it:
      - root and the owner of data_dir (the pigeon user) write the queue
        themselves through `QueueStore` (same fsync'ed group commit as SMTP
        mail; SQLite WAL lets this second process share the database),
        root acting as the owner of data_dir and with umask 077, so the
        server can read what it wrote and nobody else can; then the running
        server is nudged over the control socket. If pigeon is not running
        the message waits in the queue; that is not an error.
      - every other user hands the message to the running pigeon over its
        submit socket (pigeon.admin.submitsock): the sender is their login,
        -f is ignored, Received: shows their uid. If pigeon is not running
        the message is NOT queued: 75 (EX_TEMPFAIL), try again.
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
  * Configuration: the rule of every pigeon command (cli._config): -C
    FILE, else $PIGEON_CONFIG, else /etc/pigeon/pigeon.toml, else the
    built-in defaults; never ./pigeon.toml. A data_dir that does not exist
    is refused (78): sendmail never creates one.
  * Errors: one line "sendmail: ..." on stderr and a sysexits.h status:
    64 EX_USAGE (bad flag, no recipients), 65 EX_DATAERR (message too
    big), 67 EX_NOUSER (bad address), 70 EX_SOFTWARE (a bug), 73
    EX_CANTCREAT (the queue cannot be opened), 75 EX_TEMPFAIL (queue write
    failed, or pigeon not running for an ordinary user: try again), 77
    EX_NOPERM (permission denied, e.g. data_dir unreachable), 78 EX_CONFIG
    (bad configuration, no configuration, data_dir missing).
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
from pigeon.cli._config import become_data_owner, load_for_command
from pigeon.cli._control import config_path
from pigeon.policy.capture import CaptureRules

HELP = "sendmail(1) compatible: queue a message read from stdin (-t -i -f -bs -bp -q)"

DESCRIPTION = """\
Read a message on standard input and queue it for delivery, without the
network, like Postfix's and Sendmail's sendmail command. Recipients are
the arguments, and/or (with -t) the To, Cc and Bcc fields; Bcc fields are
removed. Missing From, Date and Message-ID fields are added. The running
pigeon is told at once; if it is not running, the message waits in the
queue until it starts. Users other than root and the pigeon user hand
their mail to the running pigeon (its submit socket): their login is the
sender, -f is ignored, and nothing is queued while pigeon is down (75).

usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-C FILE] [RECIPIENT...]
       sendmail -bs | -bp | -q | -bi

  -t         take recipients from To/Cc/Bcc (Bcc is removed)
  -i, -oi    a line with a single "." does not end the message
  -f SENDER  envelope sender ("<>": null sender; default: your login name;
             root and the pigeon user only)
  -F NAME    full name for the From field pigeon adds
  -bs        speak SMTP on stdin/stdout (any recipient is accepted)
  -bp        list the queue;  -q  flush the queue
  -C FILE    configuration (default: $PIGEON_CONFIG, /etc/pigeon/pigeon.toml)
  -o..., -B, -N, -R, -V, -O, -X, -h, -L, -v ...  ignored, for compatibility
"""

EPILOG = """\
examples:
  printf 'To: bob@example.org\\nSubject: hi\\n\\nhello\\n' | sendmail -t -i
  sendmail -f alerts@example.test -F "Cron Daemon" admin@example.test < report.txt
  php.ini:  sendmail_path = "/usr/sbin/sendmail -t -i"

exit status (sysexits.h): 0 queued, 64 usage, 65 data error, 67 bad address,
70 internal error, 73 queue cannot be opened, 75 temporary failure (pigeon
not running, for ordinary users), 77 permission denied, 78 bad or missing
configuration (a DKIM key that cannot be read, too).
"""

PROG = "sendmail"
_IGNORED_WITH_ARG = {"-B", "-N", "-R", "-V", "-O", "-X", "-h", "-L"}
_IGNORED_FLAGS = {"-v", "-n", "-m", "-U", "-G", "-x", "-bm"}


@dataclass
class Options:
    mode: str = "deliver"  # deliver | smtp | list | flush | newaliases | help
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
            return arg[len(flag) :]
        i += 1
        if i >= len(argv):
            raise UsageError(f"option {flag} needs an argument")
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            o.recipients += argv[i + 1 :]
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


def run_argv(
    argv: list[str],
    *,
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    environ: dict | None = None,
) -> int:
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
    from pigeon.config.load import ConfigError

    try:
        config = load_for_command(opts.config, environ=environ)
    except ConfigError as exc:
        return _err(str(exc), L.EX_CONFIG, stderr)
    if opts.mode in ("list", "flush"):
        from pigeon.cli import queue as queue_cli

        ns = argparse.Namespace(config=config_path(opts.config, environ), data_dir=None, json=False)
        if opts.mode == "list":
            ns.action, ns.state, ns.domain, ns.sender, ns.older_than = (
                "list",
                None,
                None,
                None,
                None,
            )
        else:
            ns.action, ns.domain = "flush", None
        return queue_cli.run(ns)
    try:
        return _submit(opts, config, stdin or sys.stdin.buffer, stderr)
    except L.SubmitError as exc:
        return _err(str(exc), exc.code, stderr)
    except Exception as exc:  # a bug: say so with the right status
        return _err(f"internal error: {exc!r}", L.EX_SOFTWARE, stderr)


def can_write_queue(config) -> bool:
    """Root, or the owner of data_dir (the pigeon user): may write the queue directly."""
    if os.geteuid() == 0:
        return True
    target = config.queue_dir if config.queue_dir.is_dir() else config.data_dir
    return os.access(target, os.W_OK | os.X_OK)


def _submit(opts: Options, config, stdin: BinaryIO, stderr: TextIO) -> int:
    """Queue the message: directly when we may write the queue, else over the submit socket."""
    from pigeon.routing.resolve import Router

    domain = Router(config).primary_domain
    uid = os.getuid()  # before any switch: Received: names the caller
    if opts.sender is None:
        sender = f"{_login_name()}@{domain}"
    elif opts.sender.strip() in ("", "<>"):
        sender = ""
    else:
        sender = L.normalize_address(opts.sender, domain)
    if not can_write_queue(config):
        return _submit_via_socket(opts, config, stdin)
    prepared = None
    if opts.mode == "deliver":
        raw = read_message(stdin, opts.ignore_dots)
        prepared = L.prepare(
            raw,
            recipients=opts.recipients,
            extract=opts.extract,
            sender=sender,
            fullname=opts.fullname,
            hostname=config.hostname,
            domain=domain,
        )
    ids = _write_queue(opts, config, prepared, sender, uid, stdin)
    _nudge(config, ids, uid)
    return 0


def _write_queue(
    opts: Options, config, prepared, sender: str, uid: int, stdin: BinaryIO
) -> list[str]:
    """Commit to the store ourselves (root acts as the owner of data_dir)."""
    from pigeon.config.session import session_config
    from pigeon.store.factory import queue_store
    from pigeon.vocab.errors import StoreError

    # Files we create must be the server's: private (never world-readable)
    # and, for root, owned by the data directory's owner.
    umask = os.umask(0o077)
    try:
        become_data_owner(config)
        store = queue_store(config)
        try:
            store.open()
        except PermissionError as exc:
            raise L.SubmitError(
                f"cannot write the queue {config.queue_dir}: {exc.strerror} "
                "(run sendmail as the pigeon user)",
                L.EX_NOPERM,
            ) from None
        except (OSError, StoreError) as exc:
            raise L.SubmitError(
                f"cannot open the queue {config.queue_dir}: {exc}", L.EX_CANTCREAT
            ) from None
        try:
            if opts.mode == "smtp":
                from pigeon.admin.stdio_smtp import run_stdio_session

                return run_stdio_session(
                    store,
                    session_config(config),
                    fd_in=stdin.fileno(),
                    fd_out=sys.stdout.fileno(),
                    uid=uid,
                    signer=_signer(config),
                )
            env = L.enqueue(
                store,
                prepared,
                sender=sender,
                hostname=config.hostname,
                uid=uid,
                now=_now(),
                max_size=config.limits.message_size,
                signer=_signer(config),
                capture=CaptureRules.of(config),  # docs/capture.md
            )
            return [env.queue_id]
        finally:
            store.close()
    finally:
        os.umask(umask)


def _signer(config):
    """The DKIM signer of [dkim] (docs/mail-auth.md); a key that cannot be read is EX_CONFIG."""
    from pigeon.config.load import ConfigError
    from pigeon.signing.signer import signer_for

    try:
        return signer_for(config)
    except ConfigError as exc:
        raise L.SubmitError(str(exc), L.EX_CONFIG) from None


def _submit_via_socket(opts: Options, config, stdin: BinaryIO) -> int:
    """An ordinary user: the running pigeon queues it (pigeon.admin.submitsock)."""
    from pigeon.admin.submitsock import SubmitUnavailable, submit

    if opts.mode == "smtp":
        return _smtp_via_socket(config, stdin)
    raw = read_message(stdin, opts.ignore_dots)
    request = {
        "recipients": opts.recipients,
        "extract": opts.extract,
        "sender": opts.sender,
        "fullname": opts.fullname,
        "raw": False,
    }
    try:
        submit(config.submit_socket, request, raw)
    except SubmitUnavailable as exc:
        raise _not_running(config, exc) from None
    return 0


def _not_running(config, exc: Exception) -> L.SubmitError:
    return L.SubmitError(
        f"pigeon is not running ({exc}), and uid {os.getuid()} cannot write its queue "
        f"{config.queue_dir}: the message was NOT queued; try again when pigeon runs",
        L.EX_TEMPFAIL,
    )


def _smtp_via_socket(config, stdin: BinaryIO) -> int:
    """sendmail -bs for an ordinary user: each message of the session goes over the socket."""
    from pigeon.admin.stdio_smtp import SocketStore, run_stdio_session
    from pigeon.admin.submitsock import SubmitUnavailable, reachable, submit
    from pigeon.config.session import session_config

    try:
        reachable(config.submit_socket)  # fail before greeting, not at each DATA
    except SubmitUnavailable as exc:
        raise _not_running(config, exc) from None
    store = SocketStore(lambda request, content: submit(config.submit_socket, request, content))
    run_stdio_session(
        store,
        session_config(config),
        fd_in=stdin.fileno(),
        fd_out=sys.stdout.fileno(),
        add_received=False,
    )
    return 0


def _now() -> float:
    import time

    return time.time()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def _nudge(config, ids: list[str], uid: int) -> None:
    """Tell the running server (if any) about the new mail; silent if it is not running."""
    if not ids:
        return
    from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError

    try:
        ControlClient(config.control_socket, timeout=10.0).call("nudge", ids=ids, uid=uid)
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
    """Console-script entry point `sendmail` (with the entry rules of cli._entry)."""
    from pigeon.cli._entry import run_entry

    sys.exit(run_entry(lambda: run_argv(sys.argv[1:] if argv is None else argv)))
