"""Running as root only as long as needed: bind, then become `user`.

Contract:
  * `account(user, group) -> (uid, gid)` resolves the configured names;
    the loader calls it so an unknown user or group is a configuration
    error naming the key (`user: no such user "pigeon"`).
  * `drop(config)` is called by the composition root after every listener is
    bound and every file pigeon holds open (queue database, control socket,
    certificate) exists, and before any mail is accepted:
      - started as root with `user` set: the data directory tree is given to
        that user (mode 0700 on directories, 0600 on files it holds), then
        supplementary groups are dropped, then setgid, then setuid (that
        order: after setuid there is no way back). It raises PrivilegeError
        if anything fails, so pigeon never goes on half-dropped;
      - started as root without `user`: a warning (ports below 1024 need
        root or CAP_NET_BIND_SERVICE; the mail need not be handled as root);
      - not root: nothing to do (with `user` set it must be the current one,
        else PrivilegeError: only root can switch).
  * The process umask is 077 from start-up (`tighten_umask`), so every file
    and directory pigeon creates is private to its user.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path

log = logging.getLogger("pigeon")


class PrivilegeError(RuntimeError):
    """Switching to the configured user failed; pigeon must not go on."""


def account(user: str, group: str = "") -> tuple[int, int]:
    """(uid, gid) of `user` (and `group`, default the user's primary group)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise KeyError(f'no such user "{user}"') from None
    if not group:
        return pw.pw_uid, pw.pw_gid
    try:
        return pw.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise KeyError(f'no such group "{group}"') from None


def tighten_umask() -> None:
    os.umask(0o077)


def _give(path: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        os.chmod(root, 0o700)
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                os.chown(p, uid, gid)
                os.chmod(p, os.stat(p).st_mode & 0o700)


def drop(user: str, group: str, data_dir: Path) -> None:
    if os.geteuid() != 0:
        if user:
            uid, _ = account(user, group)
            if uid != os.geteuid():
                raise PrivilegeError(f'user: cannot switch to "{user}": not started as root')
        return
    if not user:
        log.warning("running as root: set `user` in the configuration to drop privileges "
                    "after binding the listeners")
        return
    uid, gid = account(user, group)
    try:
        _give(data_dir, uid, gid)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise PrivilegeError(f'user: cannot switch to "{user}": {exc.strerror or exc}') from None
    if os.getuid() != uid or os.geteuid() != uid:
        raise PrivilegeError(f'user: still uid {os.geteuid()} after switching to "{user}"')
    log.info("dropped privileges: now running as %s (uid %d, gid %d)", user, uid, gid)
