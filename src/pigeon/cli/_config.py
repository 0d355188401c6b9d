"""Which configuration a pigeon command uses: one rule for every command.

Contract:
  * `locate(explicit, environ)` picks the configuration file, first match:
      1. the file named on the command line (`-c FILE`, `sendmail -C FILE`);
      2. `$PIGEON_CONFIG` when it is set and not empty;
      3. SYSTEM_CONFIG, `/etc/pigeon/pigeon.toml`, when it exists;
      4. none: the embedded defaults.
    The current directory is never searched: a `pigeon.toml` planted in a
    directory someone else can write must not decide where root's
    `sendmail` writes (docs/security.md). Like Postfix's fixed
    config_directory, the rule is the same whatever directory a command
    runs in, for `serve` and for the commands that talk to it.
  * `load_for_server(explicit, overrides)`: `pigeon serve`. With no file
    the embedded defaults apply (the quick start: ./pigeon-data, which
    `serve` creates). `serve` is the only command that creates data_dir.
  * `load_for_command(explicit, data_dir)`: every other command. It never
    invents a data directory; it raises `ConfigError` (the command exits
    78, EX_CONFIG, and the message says how to fix it) when
      - data_dir does not exist (the file, or the defaults with no
        ./pigeon-data here, name a directory no server has used), or
      - the command runs as root and no file was found (the defaults point
        into the current directory), or data_dir is a relative path.
  * `elsewhere_warning(located)`: for `serve` started with a file other
    than the system one while the system one exists, the warning that the
    other commands will not find this server without -c FILE.
  * `become_data_owner(config)`: run as root, a command that opens files in
    data_dir switches to the user owning it first (setgid, setuid), so the
    files it creates (SQLite journals, queue files, accounts.db) stay
    readable by the server; not root, or data_dir owned by root: nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.config.load import ConfigError, load_config
from pigeon.config.schema import Config

__all__ = [
    "CONFIG_ENV",
    "SYSTEM_CONFIG",
    "Located",
    "become_data_owner",
    "elsewhere_warning",
    "load_for_command",
    "load_for_server",
    "locate",
]

CONFIG_ENV = "PIGEON_CONFIG"
#: The system-wide configuration (module attribute so tests can point it elsewhere).
SYSTEM_CONFIG = Path("/etc/pigeon/pigeon.toml")


@dataclass(frozen=True)
class Located:
    path: Path | None  # None: the embedded defaults
    how: str  # where the choice came from, for messages

    def describe(self) -> str:
        return f"{self.path} ({self.how})" if self.path is not None else self.how


def locate(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Located:
    """The configuration file by the rule of the module contract."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return Located(Path(explicit), "command line")
    if env.get(CONFIG_ENV):
        return Located(Path(env[CONFIG_ENV]), f"${CONFIG_ENV}")
    if SYSTEM_CONFIG.is_file():
        return Located(SYSTEM_CONFIG, "system configuration")
    return Located(None, "built-in defaults")


def load_for_server(
    explicit: Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """`pigeon serve`'s configuration; raises ConfigError."""
    return load_config(locate(explicit, environ).path, overrides)


def _fix_hint() -> str:
    return (
        f"give the running server's configuration with -c FILE or {CONFIG_ENV}=FILE, "
        f"or install it as {SYSTEM_CONFIG}"
    )


def load_for_command(
    explicit: Path | None,
    data_dir: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    need_data_dir: bool = True,
) -> Config:
    """The configuration of a command other than `serve` (see the contract); ConfigError."""
    where = locate(explicit, environ)
    overrides = {"data_dir": data_dir} if data_dir else {}
    defaults_only = where.path is None and not data_dir
    nothing_found = f"no configuration file (-c FILE, ${CONFIG_ENV} or {SYSTEM_CONFIG})"
    if defaults_only and need_data_dir and os.geteuid() == 0:
        raise ConfigError(
            None,
            f"{nothing_found}, and commands run as root never use the "
            f"current directory's ./pigeon-data: {_fix_hint()}",
            where.how,
        )
    config = load_config(where.path, overrides)
    if not need_data_dir:
        return config
    source = "--data-dir" if data_dir else where.describe()
    if not config.data_dir.is_absolute() and os.geteuid() == 0:
        raise ConfigError(
            "data_dir",
            f'"{config.data_dir}" is relative; commands run as root need an absolute data_dir',
            source,
        )
    if not config.data_dir.is_dir():
        if defaults_only:
            raise ConfigError(
                None,
                f"{nothing_found}, and no ./pigeon-data in {os.getcwd()} "
                f"(the quick-start server's data): {_fix_hint()}",
                where.how,
            )
        raise ConfigError(
            "data_dir",
            f"{config.data_dir} does not exist: no pigeon has run "
            "with this configuration; start `pigeon serve` with it "
            "first, or fix data_dir (only `pigeon serve` creates it)",
            source,
        )
    return config


def elsewhere_warning(path: Path | None) -> str | None:
    """The warning for a server run with `path` (see the contract), or None."""
    if path is None or not SYSTEM_CONFIG.is_file():
        return None
    try:
        if Path(path).resolve() == SYSTEM_CONFIG.resolve():
            return None
    except OSError:
        pass
    return (
        f"running with {path}, but {SYSTEM_CONFIG} exists: pigeon queue, status and "
        f"sendmail read that one unless given -c {path} (or {CONFIG_ENV}={path})"
    )


def become_data_owner(config: Config) -> None:
    """Run as root: act as the owner of data_dir from now on (see the contract)."""
    if os.geteuid() != 0:
        return
    st = os.stat(config.data_dir)
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
