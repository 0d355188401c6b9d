"""Operator logging: where pigeon's log lines go and what they look like.

Contract:
  * `setup_logging(log_config)` configures the "pigeon" logger hierarchy
    (pigeon, pigeon.mail, pigeon.net, ...): its level, and one handler writing
    to stderr or to `log.file`. The same handler takes the "asyncio" logger at
    WARNING (unretrieved task exceptions are pigeon bugs an operator must
    see). It never touches the root logger; both loggers stop propagating to
    it so lines are not written twice. Calling it again replaces the handler.
  * Text format, one line per record (ISO 8601 UTC with milliseconds, chosen
    over the syslog style because it sorts, carries the year and needs no
    time zone guessing; the host name is left to syslog/journald):

        2026-11-29T17:20:01.123Z pigeon[4242] INFO pigeon.mail: 4F2A9C: from=<alice@example.org>, size=1234, nrcpt=2 (queued)

    Control characters in the message (CR, LF, ...) are escaped as \\r, \\n,
    \\xNN, so a peer cannot forge log lines; a traceback follows on extra lines
    indented by two spaces.
  * JSON format, one object per line (JSON Lines), UTF-8:

        {"ts": "2026-11-29T17:20:01.123Z", "level": "info", "logger": "pigeon.mail",
         "pid": 4242, "msg": "4F2A9C: from=<...>, ...", "queue_id": "4F2A9C",
         "from": "alice@example.org", "size": 1234, "nrcpt": 2, "detail": "queued"}

    Structured fields: a record's `extra={"fields": {...}}` become top-level
    keys (a field named like a reserved key - ts, level, logger, pid, msg,
    queue_id, detail, exc - gets a trailing "_"); `extra` `queue_id` and
    `detail` become keys of those names. Values that are not JSON types are
    written as their str(). The text format shows only the message: callers
    put in the message whatever a human reader needs.
  * The log file is created mode 0600 (it names senders, recipients and
    login names), whatever the umask, at start-up and when it is created
    again after a rotation; an existing file keeps its mode (0640 for a
    log-reading group is the administrator's choice).
  * Failure modes: a log file that cannot be opened raises ConfigError with
    key "log.file" (the CLI prints it and exits 78). Write errors later go to
    logging's own handleError (a line on stderr), never into pigeon's code;
    a full or failing disk under the log file (fsutil.STORAGE_ERRNOS) gets
    one line on stderr when it starts, without a traceback, and one when
    the log is written again (a file keeps the lines it could not write in
    its buffer and writes them then).
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import queue
import re
import sys
import threading
import time
from typing import Any, TextIO

from pigeon.config.load import ConfigError
from pigeon.config.schema import LogConfig
from pigeon.fsutil import STORAGE_ERRNOS, ensure_file

__all__ = ["setup_logging", "TextFormatter", "JsonFormatter", "ROOT_LOGGER"]

ROOT_LOGGER = "pigeon"

_RESERVED = frozenset({"ts", "level", "logger", "pid", "msg", "queue_id", "detail", "exc"})
# C0, DEL and C1: \x9b is a CSI to terminals that honour 8-bit controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def escape_controls(text: str) -> str:
    """`text` with control characters written as \\r, \\n, \\t or \\xNN (one line, always)."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class TextFormatter(logging.Formatter):
    """`2026-11-29T17:20:01.123Z pigeon[pid] LEVEL logger: message`."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} pigeon[{record.process}] {record.levelname} "
            f"{record.name}: {escape_controls(record.getMessage())}"
        )
        extra = self._exception_text(record)
        if extra:
            line += "\n" + "\n".join("  " + part for part in extra.splitlines())
        return line

    def _exception_text(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring for the keys."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        queue_id = getattr(record, "queue_id", None)
        if queue_id is not None:
            obj["queue_id"] = queue_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                key = str(key)
                obj[key + "_" if key in _RESERVED else key] = value
        detail = getattr(record, "detail", None)
        if detail is not None:
            obj["detail"] = detail
        if record.exc_info or record.stack_info:
            parts = []
            if record.exc_info:
                parts.append(self.formatException(record.exc_info))
            if record.stack_info:
                parts.append(self.formatStack(record.stack_info))
            obj["exc"] = "\n".join(parts)
        return json.dumps(obj, ensure_ascii=False, default=str)


class _ThreadHandoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are (no pickling, no pre-formatting).

    The event loop must not wait for a write(2) to the log file or a pipe
    (measured: about a sixth of the loop's time at a few hundred messages a
    second). Records are formatted and written by `_BatchWriter`'s thread.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.getMessage()  # freeze %-args now: they may change before the write
        return record


#: How long the writer lets records pile up after a wake-up. While it sleeps,
#: logging costs the event loop a queue put and nothing else: no thread to
#: wake (a futex and a GIL hand-over per record, measured at a few hundred
#: messages a second), and one write(2) per batch instead of one per line.
BATCH_INTERVAL = 0.02


class _BatchWriter:
    """The writer thread: blocks while idle, then writes what accumulated in batches.

    Stream and file handlers get each batch as ONE write and ONE flush; any
    other handler (syslog) gets the records one by one. `flush()` returns
    once everything put before it is written; `stop()` drains and ends the
    thread (nothing handed over is dropped).
    """

    _STOP = object()

    def __init__(self, records, handlers: list[logging.Handler]) -> None:
        self._records = records
        self._handlers = handlers
        self._lost: dict[logging.Handler, int] = {}  # lines that met a full disk
        self._thread = threading.Thread(target=self._run, name="pigeon-log-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        done = threading.Event()
        self._records.put(done)
        done.wait(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._records.put(self._STOP)
            self._thread.join(10.0)

    def _run(self) -> None:
        while True:
            batch = [self._records.get()]  # idle: sleep until there is work
            time.sleep(BATCH_INTERVAL)
            while True:
                try:
                    batch.append(self._records.get_nowait())
                except queue.Empty:
                    break
            stop = self._write(batch)
            if stop:
                return

    def _write(self, batch: list) -> bool:
        records = [r for r in batch if isinstance(r, logging.LogRecord)]
        for handler in self._handlers:
            try:
                if records:
                    self._emit(handler, records)
                    if handler in self._lost:
                        _stderr(
                            f"pigeon: the log is written again ({self._lost.pop(handler)} "
                            f"lines met the failing disk)"
                        )
            except OSError as exc:
                if exc.errno not in STORAGE_ERRNOS:
                    handler.handleError(records[-1])
                    continue
                if handler not in self._lost:
                    _stderr(
                        f"pigeon: cannot write the log: {exc.strerror}; "
                        f"trying again with each new line"
                    )
                self._lost[handler] = self._lost.get(handler, 0) + len(records)
            except Exception:  # never let the writer thread die
                handler.handleError(records[-1])
        stop = False
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
            elif item is self._STOP:
                stop = True
        return stop

    @staticmethod
    def _emit(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
        if not isinstance(handler, logging.StreamHandler):
            for record in records:
                handler.handle(record)
            return
        lines = []
        for record in records:
            if record.levelno >= handler.level:
                lines.append(handler.format(record) + handler.terminator)
        if not lines:
            return
        with handler.lock or contextlib.nullcontext():
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                handler.reopenIfNeeded()  # logrotate moved the file: once per batch
            stream = handler.stream
            stream.write("".join(lines))
            stream.flush()


def _stderr(line: str) -> None:
    """A line about the log itself, where the administrator will see it."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_listener: _BatchWriter | None = None


def _stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()  # drains the queue: nothing logged is dropped at exit
        _listener = None


class _SyslogFormatter(logging.Formatter):
    """RFC 3164 style: the syslog daemon adds the time; we give the tag."""

    def format(self, record: logging.LogRecord) -> str:
        return f"pigeon[{record.process}]: {record.name}: {escape_controls(record.getMessage())}"


class _Tee(logging.Handler):
    """Several handlers behind one (foreground mode with syslog)."""

    def __init__(self, handlers: list[logging.Handler]) -> None:
        super().__init__()
        self.handlers = handlers

    def emit(self, record: logging.LogRecord) -> None:
        for h in self.handlers:
            h.handle(record)


def _syslog_handler(target: str) -> logging.Handler:
    if target.startswith("/"):
        address: str | tuple[str, int] = target
    else:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                "log.syslog", f'expected "/path/to/socket" or "host:port", got {target!r}'
            )
        address = (host.strip("[]"), int(port))
    try:
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
    except OSError as exc:
        raise ConfigError("log.syslog", f"cannot open {target}: {exc.strerror or exc}") from None
    handler.setFormatter(_SyslogFormatter())
    return handler


#: The log names senders, recipients and login names: owner only.
LOG_FILE_MODE = 0o600


class _PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """A log file created mode 0600 whatever the umask, at start and after
    logrotate moved it away; an existing file keeps its mode."""

    def _open(self):
        ensure_file(self.baseFilename, LOG_FILE_MODE)
        return super()._open()


def flush_logs(timeout: float = 10.0) -> None:
    """Wait until every record handed to the writer thread is written (at most `timeout` s)."""
    if _listener is not None:
        _listener.flush(timeout)


def setup_logging(
    log_config: LogConfig, *, stream: TextIO | None = None, background: bool | None = None
) -> None:
    """Send the "pigeon" loggers to stderr (or `stream`, or log_config.file) in the chosen format.

    `stream` is the test seam; it is ignored when log_config.file is set.
    `background` (default: True unless `stream` is given) writes from a
    separate thread, drained at exit; lines already handed over are only lost
    if the process is killed with SIGKILL.
    Raises ConfigError("log.file", ...) when the file cannot be opened.
    """
    global _listener
    # Logging HOWTO, "Optimization": our formats use neither the caller's
    # file/line nor thread names, and finding the caller walks the stack on
    # every record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    if background is None:
        background = stream is None
    handler: logging.Handler
    if log_config.file is not None:
        try:
            handler = _PrivateFileHandler(log_config.file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "log.file", f"cannot open {log_config.file}: {exc.strerror or exc}"
            ) from None
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_config.format == "json" else TextFormatter())
    handlers: list[logging.Handler] = [handler]
    if log_config.syslog:
        handlers.append(_syslog_handler(log_config.syslog))
    _stop_listener()
    if background:
        import atexit

        records: queue.SimpleQueue = queue.SimpleQueue()
        _listener = _BatchWriter(records, handlers)
        atexit.register(_stop_listener)
        handler = _ThreadHandoff(records)
    elif len(handlers) > 1:
        handler = _Tee(handlers)
    handler.set_name("pigeon")

    for name, level in ((ROOT_LOGGER, log_config.level.upper()), ("asyncio", "WARNING")):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if old.get_name() == "pigeon":
                logger.removeHandler(old)
                if old is not handler:
                    old.close()
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
