"""Editing pigeon's configuration file for the console: comments and layout kept, checked, atomic.

Contract:
  * `ConfigFile(path)`: `read()` parses the file with tomlkit (a TOML
    document that keeps the operator's comments, order and spacing);
    `EditError` when it cannot be read or parsed.
  * The edits work on that document and change only what they name:
    `add_domain(doc, name, mailboxes, capture)` (a `[domains."NAME"]`
    table; a `domains = [...]` list is kept a list while no domain needs a
    table, and is turned into tables when one does), `remove_domain`,
    `set_alias(doc, key, targets)` (one target: a string, several: a
    list), `remove_alias`. Names are compared lowercased, as the loader
    does. They do not check names or addresses: pigeon's own loader does,
    next.
  * `save(doc)` (blocking: call it in a thread) writes the new text to a
    temporary file beside the old one (same directory, so relative paths
    in it mean the same), loads it with pigeon's configuration loader
    (pigeon.config.load `load_config`) and refuses with the loader's own
    message (EditError, the temporary name replaced by the file's) when it
    is not valid, before the file is touched. Else: the old file is copied
    to `FILE.bak`, the new one gets the old one's mode (and owner, as
    root), is fsynced and renamed over the file, and the directory is
    fsynced: a crash leaves the old file or the new one, never half.
  * The caller then asks the running pigeon to reload (console/settings.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, Table
from tomlkit.toml_document import TOMLDocument

from pigeon.config.load import ConfigError, load_config

__all__ = [
    "ConfigFile",
    "EditError",
    "add_domain",
    "remove_alias",
    "remove_domain",
    "set_alias",
]


class EditError(Exception):
    """Why the configuration was not changed (shown on the page as it is)."""


def _key_of(table: Table | TOMLDocument, name: str) -> str | None:
    """The key spelling `name` in `table`, compared lowercased."""
    wanted = name.strip().lower()
    for key in table:
        if str(key).lower() == wanted:
            return str(key)
    return None


def _domains_table(doc: TOMLDocument) -> Table:
    current = doc.get("domains")
    if current is None:
        table = tomlkit.table(is_super_table=True)
        doc["domains"] = table
        return doc["domains"]
    if isinstance(current, Table):
        return current
    if isinstance(current, (Array, list)):
        # The list shorthand becomes one table per domain (no keys: the same
        # meaning), so a domain with mailboxes or capture can join them.
        table = tomlkit.table(is_super_table=True)
        for name in current:
            table[str(name)] = tomlkit.table()
        del doc["domains"]
        doc["domains"] = table
        return doc["domains"]
    raise EditError("domains in the file is neither a table nor a list: fix it by hand")


def add_domain(
    doc: TOMLDocument, name: str, mailboxes: Iterable[str] | None = None, capture: bool = False
) -> None:
    name = name.strip().lower()
    if not name:
        raise EditError("a domain needs a name")
    current = doc.get("domains")
    boxes = list(mailboxes) if mailboxes is not None else None
    if isinstance(current, (Array, list)) and boxes is None and not capture:
        if any(str(d).lower() == name for d in current):
            raise EditError(f"the domain {name} is already in the file")
        current.append(name)
        return
    table = _domains_table(doc)
    if _key_of(table, name) is not None:
        raise EditError(f"the domain {name} is already in the file")
    entry = tomlkit.table()
    if boxes is not None:
        entry["mailboxes"] = boxes
    if capture:
        entry["capture"] = True
    table[name] = entry


def remove_domain(doc: TOMLDocument, name: str) -> None:
    current = doc.get("domains")
    if isinstance(current, (Array, list)):
        for i, item in enumerate(current):
            if str(item).lower() == name.strip().lower():
                del current[i]
                return
    elif isinstance(current, Table):
        key = _key_of(current, name)
        if key is not None:
            del current[key]
            return
    raise EditError(
        f"the domain {name} is not in the file (it may come from the embedded defaults)"
    )


def set_alias(doc: TOMLDocument, key: str, targets: list[str]) -> None:
    key = key.strip()
    if not key:
        raise EditError("an alias needs an address (or @domain for a catch-all)")
    if not targets:
        raise EditError(f"the alias {key} needs at least one target address")
    aliases = doc.get("aliases")
    if aliases is None:
        doc["aliases"] = tomlkit.table()
        aliases = doc["aliases"]
    if not isinstance(aliases, Table):
        raise EditError("aliases in the file is not a table: fix it by hand")
    old = _key_of(aliases, key)
    value = targets[0] if len(targets) == 1 else targets
    if old is not None:
        aliases[old] = value
    else:
        aliases[key] = value


def remove_alias(doc: TOMLDocument, key: str) -> None:
    aliases = doc.get("aliases")
    old = _key_of(aliases, key) if isinstance(aliases, Table) else None
    if old is None or not isinstance(aliases, Table):
        raise EditError(f"the alias {key} is not in the file")
    del aliases[old]


class ConfigFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> TOMLDocument:
        try:
            text = self.path.read_text("utf-8")
        except OSError as exc:
            raise EditError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            return tomlkit.parse(text)
        except TOMLKitError as exc:
            raise EditError(f"{self.path}: not valid TOML: {exc}") from None

    def save(self, doc: TOMLDocument) -> None:
        """Check the new text with pigeon's loader, then replace the file (see the contract)."""
        text = tomlkit.dumps(doc)
        path = self.path
        tmp = path.with_name(f".{path.name}.console-{os.getpid()}.tmp")
        try:
            st = path.stat()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise EditError(
                f"cannot write beside {path}: {exc.strerror or exc} (the directory must be "
                "writable by the user pigeon runs as)"
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), st.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                os.fsync(f.fileno())
            try:
                load_config(tmp)
            except ConfigError as exc:
                raise EditError(str(exc).replace(str(tmp), str(path))) from None
            shutil.copy2(path, path.with_name(path.name + ".bak"))
            os.replace(tmp, path)
        except OSError as exc:
            raise EditError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
