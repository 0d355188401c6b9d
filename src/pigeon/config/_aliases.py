"""Reading an aliases(5) file (`aliases_file`, the format of Postfix's and
Sendmail's /etc/aliases) into local aliases.

Contract:
  * `read_aliases_file(path)` returns {name (lowercased): targets} or raises
    `ConfigError("aliases_file", "<file>, line <n>: <problem>")`; the file
    and line are those of the offending text (an `:include:` file's own).
    Reading is the only I/O; nothing is created.
  * Format (aliases(5)):
        # comment                 (first non-blank character "#")
        name: target, target, ...
            target, ...           (a line starting with blanks continues the entry)
    Blank lines are ignored. `name` is a local part (optionally in double
    quotes) and is matched case-insensitively in every local domain; it must
    not contain "@". An entry needs at least one target; a name defined twice
    is an error (pigeon never silently picks one).
  * Targets, comma-separated (commas inside double quotes do not split):
      - `user` (a local part, in the domain of the address being expanded) or
        `user@domain`: an address;
      - `\\user`: that mailbox, not expanded by aliases again (aliases(5));
      - `:include:/absolute/path`: the addresses listed in that file (commas
        or new lines between them, "#" comments), read now; include files may
        include others, at most `MAX_INCLUDE_DEPTH` deep, never in a cycle;
      - `|command` and `/file/name` are REFUSED with an error naming the line:
        pigeon runs no programs and appends to no files for mail (hand such
        mail to a program through a `[transports]` LMTP/SMTP service).
  * Text must be UTF-8.
  * `check_catch_alls(config)`: a catch-all key "@domain" in [aliases] must
    name a local domain ([domains], or [transports] "local"), since the
    router applies catch-alls to local domains only; otherwise an error
    naming the key, never a silently unused entry.
"""

from __future__ import annotations

import re
from pathlib import Path

from pigeon.config._checks import ConfigError, domain_problem, join, show
from pigeon.config.schema import Config
from pigeon.vocab.address import Address, PathError, parse_path

__all__ = ["read_aliases_file", "check_catch_alls", "MAX_INCLUDE_DEPTH"]

KEY = "aliases_file"
MAX_INCLUDE_DEPTH = 5
_BAD_TEXT = re.compile(r"[\s\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Problem(Exception):
    """A problem at one line of one file (turned into a ConfigError at the top)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}, line {line}: {message}")


def read_aliases_file(path: Path) -> dict[str, tuple[str, ...]]:
    """Parse the aliases(5) file `path` (see the module contract)."""
    try:
        return _parse_aliases(Path(path))
    except _Problem as exc:
        raise ConfigError(KEY, str(exc)) from None


def _read_lines(path: Path, where: tuple[Path, int] | None) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = f"cannot read {path}: {exc.strerror or exc}"
        if where is None:
            raise ConfigError(KEY, reason) from None
        raise _Problem(where[0], where[1], reason) from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _Problem(path, line, "not UTF-8 text") from None


def _logical_lines(path: Path, lines: list[str]) -> list[tuple[int, str]]:
    """(first line number, text) of each entry, continuation lines joined."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if not out:
                raise _Problem(
                    path, number, "a continuation line (starting with blanks) before any entry"
                )
            out[-1] = (out[-1][0], out[-1][1] + " " + stripped)
        else:
            out.append((number, stripped))
    return out


def _split_unquoted(text: str, sep: str) -> list[str]:
    """Split at `sep` outside double quotes (a backslash escapes inside them)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _parse_aliases(path: Path) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    defined: dict[str, int] = {}
    for number, text in _logical_lines(path, _read_lines(path, None)):
        head, *rest = _split_unquoted(text, ":")
        if not rest:
            raise _Problem(path, number, f'expected "name: target, ...", got {show(text)}')
        name = _unquote(head.strip())
        if not name or _CONTROL.search(name) or "@" in name:
            raise _Problem(
                path,
                number,
                f"{show(head.strip())} is not a usable alias name "
                '(a local part without "@" or control characters)',
            )
        # The canonical form the router compares: re-quoted when it is not a
        # dot-string ("first last" stays quoted), lowercased.
        name = str(Address(name, "")).lower()
        if name in defined:
            raise _Problem(path, number, f'"{name}" is already defined on line {defined[name]}')
        targets = _targets(path, number, ":".join(rest), depth=0, seen=(path.resolve(),))
        if not targets:
            raise _Problem(path, number, f'"{name}" has no target')
        defined[name] = number
        out[name] = tuple(targets)
    return out


def _targets(
    path: Path, number: int, text: str, *, depth: int, seen: tuple[Path, ...]
) -> list[str]:
    out: list[str] = []
    for raw in _split_unquoted(text, ","):
        raw = raw.strip()
        if not raw:
            continue
        value = _unquote(raw)
        if value.lower().startswith(":include:"):
            out += _include(path, number, value[len(":include:") :].strip(), depth, seen)
        elif value.startswith("|"):
            raise _Problem(
                path,
                number,
                f"{show(raw)}: command targets are not supported "
                "(pigeon runs no programs for mail; hand such mail to "
                "an LMTP or SMTP service in [transports])",
            )
        elif value.startswith("/"):
            raise _Problem(
                path,
                number,
                f"{show(raw)}: file targets are not supported (pigeon delivers to Maildirs only)",
            )
        else:
            out.append(_address(path, number, raw, value))
    return out


def _address(path: Path, number: int, raw: str, value: str) -> str:
    """A target address: "user", "\\user" or "user@domain" (domain lowercased)."""
    bare = value[1:] if value.startswith("\\") else value
    local, at, domain = bare.rpartition("@") if "@" in bare else (bare, "", "")
    if not local or _BAD_TEXT.search(value):
        raise _Problem(path, number, f"{show(raw)} is not an address")
    if at:
        problem = domain_problem(domain.lower())
        if problem:
            raise _Problem(path, number, f"{show(raw)} has an invalid domain ({problem})")
    try:  # the SMTP grammar (RFC 5321 §4.1.2): MAIL/RCPT must be able to carry it
        parse_path(f"<{local}@{domain or 'example.invalid'}>", allow_null=False, smtputf8=True)
    except PathError:
        raise _Problem(
            path,
            number,
            f"{show(raw)} is not an address SMTP can carry (quote a "
            "local part with special characters)",
        ) from None
    return f"{value.rpartition('@')[0]}@{domain.lower()}" if at else value


def _include(path: Path, number: int, name: str, depth: int, seen: tuple[Path, ...]) -> list[str]:
    """The targets listed in an :include: file (module contract)."""
    if not name.startswith("/"):
        raise _Problem(path, number, f":include: needs an absolute file name, got {show(name)}")
    if depth + 1 > MAX_INCLUDE_DEPTH:
        raise _Problem(path, number, f":include: files nested more than {MAX_INCLUDE_DEPTH} deep")
    target = Path(name)
    if target.resolve() in seen:
        raise _Problem(path, number, f":include: of {name} makes a cycle")
    out: list[str] = []
    for line_number, line in enumerate(_read_lines(target, (path, number)), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out += _targets(
                target, line_number, stripped, depth=depth + 1, seen=(*seen, target.resolve())
            )
    return out


def check_catch_alls(config: Config) -> None:
    """Every "@domain" key of [aliases] names a local domain (module contract)."""
    for key in config.aliases:
        if key.startswith("@") and not _is_local(config, key[1:]):
            raise ConfigError(
                join("aliases", key),
                f'"{key[1:]}" is not a local domain; a catch-all '
                "works in local domains only (add it to [domains])",
            )


def _is_local(config: Config, domain: str) -> bool:
    """Local as the router decides it: [domains], or the nearest [transports] entry is "local"."""
    if domain in config.domains:
        return True
    labels = domain.split(".")
    for i in range(len(labels)):
        spec = config.transports.get(domain if i == 0 else "." + ".".join(labels[i:]))
        if spec is not None:
            return spec.transport == "local"
    return False
