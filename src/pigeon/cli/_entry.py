"""How every pigeon command ends: ordinary conditions never end in a traceback.

Contract:
  * `run_entry(func, escape=True)` runs one command (`func()` returns its
    exit status) and turns the conditions any command may meet into a
    status and at most one line on stderr:
      - BrokenPipeError: the reader of stdout went away (`pigeon queue list
        | head`): nothing is printed, stdout is pointed at /dev/null so the
        interpreter's last flush stays quiet, and the status is 141 (128 +
        SIGPIPE, what a shell reports for a command SIGPIPE killed; Python
        ignores SIGPIPE, and asyncio relies on that, so we cannot just die
        of it);
      - KeyboardInterrupt (Ctrl-C, e.g. at a password prompt): a newline on
        stderr (the terminal shows ^C), status 130 (128 + SIGINT);
      - PermissionError not handled by the command: "pigeon: permission
        denied: PATH (...)", 77 (EX_NOPERM); any other OSError: one line,
        74 (EX_IOERR).
    Anything else is a bug and keeps its traceback.
  * With `escape`, human-facing output is made harmless while the command
    runs: sys.stdout and sys.stderr are wrapped by `EscapingWriter`, which
    writes control characters (C0 but newline and tab, DEL, C1) as \\r or
    \\xNN (the log's notation), so an EHLO name, a remote reply or a header field cannot
    drive the terminal. JSON output is unaffected (json.dumps escapes them
    already). `serve` runs unwrapped: its log lines are escaped by
    pigeon.obs.logsetup. `raw_stream` gives the unwrapped stream, for the
    progress bar's carriage returns.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["EX_IOERR", "EX_NOPERM", "EscapingWriter", "escape_controls", "raw_stream", "run_entry"]

EX_IOERR = 74
EX_NOPERM = 77
EX_SIGINT = 130
EX_SIGPIPE = 141

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\r": "\\r"}


def escape_controls(text: str) -> str:
    """`text` with every control character but newline and tab made visible."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class EscapingWriter:
    """A text stream that escapes control characters on their way to `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self.raw = stream

    def write(self, text: str) -> int:
        self.raw.write(escape_controls(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.raw, name)  # flush, fileno, isatty, encoding, buffer...


def raw_stream(stream: TextIO) -> TextIO:
    """The stream under an EscapingWriter (or `stream` itself)."""
    return stream.raw if isinstance(stream, EscapingWriter) else stream


def _quiet_stdout() -> None:
    """After a broken pipe: later writes and the final flush go to /dev/null."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capture it)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def run_entry(func: Callable[[], int], *, escape: bool = True) -> int:
    """Run one command by the rules of the module contract; its exit status."""
    saved = sys.stdout, sys.stderr
    if escape:
        sys.stdout, sys.stderr = EscapingWriter(saved[0]), EscapingWriter(saved[1])
    try:
        status = func()
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        sys.stdout, sys.stderr = saved
        _quiet_stdout()
        return EX_SIGPIPE
    except KeyboardInterrupt:
        sys.stdout, sys.stderr = saved
        print(file=sys.stderr)
        return EX_SIGINT
    except PermissionError as exc:
        return _os_error(
            exc,
            EX_NOPERM,
            "permission denied",
            " (run the command as root or as the user pigeon runs as)",
        )
    except OSError as exc:
        return _os_error(exc, EX_IOERR, exc.strerror or "I/O error", "")
    finally:
        sys.stdout, sys.stderr = saved


def _os_error(exc: OSError, status: int, what: str, hint: str) -> int:
    where = f": {exc.filename}" if exc.filename else ""
    print(f"pigeon: {what}{where}{hint}", file=sys.stderr)
    return status
