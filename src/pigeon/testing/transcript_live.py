"""Run SMTP transcripts against a live pigeon server over a loopback socket.

Contract:
  * Uses the same parsed `Transcript` as the in-memory runner
    (`pigeon.testing.transcript`), so one file checks both the sans-IO core
    and the whole server (asyncio driver, real policy, real queue).
  * `live_config_toml(transcript)` turns the transcript's `!config` lines into
    the equivalent pigeon TOML; it returns None when a setting has no
    configuration key (the transcript is then in-memory only), and
    `live_skip_reason()` says why a transcript cannot run live (for example
    long `!wait`s, which would make the suite slow).
  * The live server is configured as the in-memory runner configures the
    real pipeline (pigeon.testing.transcript_memory, which reads the same
    `LIVE_BASE_CONFIG` and `live_config_toml`): hostname "localhost", local
    domains "localhost" (any mailbox) and "known.example" (mailbox list
    without "unknown"), no relay networks. `CONFIG_KEYS` maps each
    `!config` setting to its configuration key.
  * `!expect-content` steps are skipped live (the content is checked in
    memory; end-to-end tests check Maildir contents).
  * TLS and AUTH: the in-memory session offers neither by default, so the
    live smtp listener runs with `tls.starttls = false` unless the transcript
    says `!config starttls=true`. `auth_mechanisms` turns on AUTH for the
    smtp listener (`auth.smtp_listener`); a transcript with
    `auth_required=true` plays against the submission listener instead
    (`live_role`). The live server must have the account of
    `transcript.TRANSCRIPT_USER`. `!starttls` runs a real handshake (the
    certificate is not verified).
"""

from __future__ import annotations

import socket
import ssl
import time

from pigeon.testing.transcript import (
    Expect,
    ExpectClose,
    ExpectContent,
    Send,
    StartTls,
    Transcript,
    TranscriptMismatch,
    Wait,
)

LIVE_BASE_CONFIG = '[domains."localhost"]\n[domains."known.example"]\nmailboxes = ["known"]\n'

MAX_LIVE_WAIT = 3.0  # seconds of !wait a live run may spend in total

# SessionConfig field -> (TOML table, key); ("", "") for no key
CONFIG_KEYS = {
    "max_message_size": ("limits", "message_size"),
    "max_recipients": ("limits", "recipients"),
    "max_errors": ("limits", "errors"),
    "max_junk_commands": ("limits", "junk_commands"),
    "max_header_size": ("limits", "header_size"),
    "hop_limit": ("limits", "hop_count"),
    "command_timeout": ("timeouts", "command"),
    "data_timeout": ("timeouts", "data_block"),
    "data_deadline": ("timeouts", "data_total"),
    "bare_newline": ("smtp", "bare_newline"),
    "eight_bit_undeclared": ("smtp", "eight_bit_undeclared"),
    "enable_pipelining": ("smtp", "pipelining"),
    "enable_chunking": ("smtp", "chunking"),
    "enable_smtputf8": ("smtp", "smtputf8"),
    "enable_dsn": ("smtp", "dsn"),
    "enable_8bitmime": ("smtp", "eight_bit_mime"),
    "starttls": ("tls", "starttls"),
    "auth_mechanisms": ("auth", "mechanisms"),
    "auth_required": ("", ""),  # no key: selects the submission listener (live_role)
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def live_skip_reason(t: Transcript) -> str | None:
    unknown = [k for k in t.config if k not in CONFIG_KEYS and k != "hostname"]
    if unknown:
        return f"setting(s) {unknown} have no configuration key"
    waited = sum(step.seconds for step in t.steps if isinstance(step, Wait))
    if waited > MAX_LIVE_WAIT:
        return f"waits {waited:.0f}s (timers are covered in memory and by test_lifecycle)"
    return None


def live_role(t: Transcript) -> str:
    """ "submission" for transcripts that need AUTH before MAIL, else "smtp"."""
    return "submission" if t.config.get("auth_required") else "smtp"


def live_config_toml(t: Transcript) -> str:
    """The [tables] of pigeon TOML matching the transcript's !config lines."""
    tables: dict[str, dict[str, str]] = {"tls": {"starttls": "false"}}
    for key, value in sorted(t.config.items()):
        if key in CONFIG_KEYS and CONFIG_KEYS[key][0]:
            table, name = CONFIG_KEYS[key]
            tables.setdefault(table, {})[name] = _toml_value(value)
    if t.config.get("auth_mechanisms") and live_role(t) == "smtp":
        tables["auth"]["smtp_listener"] = "true"
    return "".join(
        f"[{table}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
        for table, items in tables.items()
    )


class _LineReader:
    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock, self.name, self.buf, self.eof = sock, name, b"", False

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            if self.eof or not self._fill(max(0.01, deadline - time.monotonic())):
                if self.eof or time.monotonic() >= deadline:
                    return None
        raw, _, self.buf = self.buf.partition(b"\r\n")
        return raw.decode("utf-8", "replace")

    def expect_eof(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(max(0.01, deadline - time.monotonic()))
        return self.eof


def run_live(t: Transcript, host: str, port: int, *, reply_timeout: float = 10.0) -> None:
    """Play `t` against host:port; raise TranscriptMismatch on a difference."""

    def fail(lineno: int, msg: str) -> TranscriptMismatch:
        return TranscriptMismatch(f"{t.name}:{lineno} (live): {msg}")

    with socket.create_connection((host, port), timeout=reply_timeout) as raw:
        sock: socket.socket = raw
        reader = _LineReader(sock, t.name)
        closed_expected = False
        last = 0
        for step in t.steps:
            last = step.lineno
            if isinstance(step, Send):
                try:
                    sock.sendall(step.data)
                except OSError as exc:
                    raise fail(step.lineno, f"send failed: {exc}") from None
            elif isinstance(step, Expect):
                got = reader.line(reply_timeout)
                if got is None:
                    raise fail(
                        step.lineno,
                        f"expected {step.text!r}, got nothing"
                        + (" (connection closed)" if reader.eof else ""),
                    )
                if not step.matches(got):
                    raise fail(step.lineno, f"expected {step.text!r}, got {got!r}")
            elif isinstance(step, ExpectClose):
                closed_expected = True
                if not reader.expect_eof(reply_timeout):
                    raise fail(step.lineno, "expected the server to close the connection")
            elif isinstance(step, Wait):
                time.sleep(step.seconds)
            elif isinstance(step, StartTls):
                if reader.buf or reader.line(0.2) is not None:
                    raise fail(
                        step.lineno, f"unread server output before the handshake {reader.buf!r}"
                    )
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                try:
                    sock = ctx.wrap_socket(sock, server_hostname=host)
                except (ssl.SSLError, OSError) as exc:
                    raise fail(step.lineno, f"TLS handshake failed: {exc}") from None
                reader.sock = sock
            elif isinstance(step, ExpectContent):
                pass
        if not closed_expected:
            extra = reader.line(0.3)
            if extra is not None or reader.buf:
                raise fail(last, f"unexpected server output {extra!r}")
            if reader.eof:
                raise fail(last, "the server closed the connection unexpectedly")
        elif reader.buf:
            raise fail(last, f"unexpected server output before close {reader.buf!r}")
