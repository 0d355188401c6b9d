"""Running as root only as long as needed: bind, then become `user`.

Contract:
  * `account(user, group) -> (uid, gid)` resolves the configured names;
    the loader calls it so an unknown user or group is a configuration
    error naming the key (`user: no such user "pigeon"`).
  * `make_data_dir(data_dir, user)` creates the data directory (mode 0700,
    whatever the umask) before anything is put in it. Started as root with
    `user` set, a data_dir that is a symbolic link is refused
    (PrivilegeError naming `data_dir`): root would hand over whatever it
    points to. Name the real directory.
  * `drop(config)` is called by the composition root after every listener is
    bound and every file pigeon holds open (queue database, control socket,
    certificate) exists, and before any mail is accepted:
      - started as root with `user` set: the data directory tree is given to
        that user (mode 0700 on directories; files lose group and other
        write and execute bits, their other bits are those of
        docs/security.md), then supplementary groups are dropped,
        then setgid, then setuid (that order: after setuid there is no way
        back). It raises PrivilegeError if anything fails, so pigeon never
        goes on half-dropped;
      - started as root without `user`: a warning (ports below 1024 need
        root or CAP_NET_BIND_SERVICE; the mail need not be handled as root);
      - not root: nothing to do (with `user` set it must be the current one,
        else PrivilegeError: only root can switch).
  * Rule: as root, never walk or change a file by its path. The tree is
    walked through file descriptors: every entry is opened relative to its
    directory's descriptor with O_NOFOLLOW (O_PATH: no device is ever
    really opened), checked with fstat, and changed through that
    descriptor (fchown/fchmod, or /proc/self/fd for the O_PATH ones), so a
    directory swapped for a symbolic link while the walk runs is seen as a
    link, not followed. Symbolic links are left alone (what they point to
    must already belong to `user`), and so is a regular file with more
    than one hard link (it may be a system file linked in by the pigeon
    user); both are logged.
  * The process umask is 077 from start-up (`tighten_umask`), and every file
    pigeon creates has an explicit mode as well (docs/security.md lists
    them), so nothing depends on the umask it was started with.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
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


def make_data_dir(data_dir: Path, user: str) -> None:
    """Create data_dir (0700); refuse a symlink when root will give it to `user`."""
    if os.geteuid() == 0 and user and Path(data_dir).is_symlink():
        raise PrivilegeError(
            f"data_dir: {data_dir} is a symbolic link: name the real directory "
            "(started as root, pigeon gives data_dir to `user` and never follows "
            "a link to do so)"
        )
    Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ENTRY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _give(path: Path, uid: int, gid: int) -> None:
    """Give the tree at `path` to uid:gid (see the contract's rule)."""
    if not os.path.isdir("/proc/self/fd"):
        raise PrivilegeError("cannot give data_dir to `user` safely: /proc is not mounted")
    try:
        top = os.open(path, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise PrivilegeError(
                f"data_dir: {path} is a symbolic link: name the real directory"
            ) from None
        raise
    try:
        _give_dir(top, str(path), uid, gid)
    finally:
        os.close(top)


def _give_dir(fd: int, where: str, uid: int, gid: int) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    for name in os.listdir(fd):
        try:
            entry = os.open(name, _ENTRY, dir_fd=fd)
        except FileNotFoundError:
            continue  # removed meanwhile
        try:
            _give_entry(entry, os.path.join(where, name), uid, gid)
        finally:
            os.close(entry)


def _give_entry(entry: int, where: str, uid: int, gid: int) -> None:
    st = os.fstat(entry)
    if stat.S_ISLNK(st.st_mode):
        log.warning(
            "not giving %s to the pigeon user: a symbolic link (never followed as root; "
            "what it points to must already be the user's)",
            where,
        )
        return
    if stat.S_ISDIR(st.st_mode):
        # "." of the O_PATH descriptor: exactly the directory fstat saw.
        sub = os.open(".", _DIR, dir_fd=entry)
        try:
            _give_dir(sub, where, uid, gid)
        finally:
            os.close(sub)
        return
    # Group and other lose write and execute; read stays, so the modes of
    # docs/security.md survive (the PID file and certificate are 0644), and
    # the directories, 0700, keep everyone else out anyway.
    mode = stat.S_IMODE(st.st_mode) & 0o744
    if (st.st_uid, st.st_gid) == (uid, gid) and stat.S_IMODE(st.st_mode) == mode:
        return
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        log.warning(
            "not giving %s to the pigeon user: it has %d hard links (one may be a system file)",
            where,
            st.st_nlink,
        )
        return
    # The O_PATH descriptor cannot be fchown'ed; its /proc/self/fd link
    # names exactly the file it was opened on (sockets and FIFOs too).
    handle = f"/proc/self/fd/{entry}"
    os.chown(handle, uid, gid)
    os.chmod(handle, mode)


def drop(user: str, group: str, data_dir: Path) -> None:
    if os.geteuid() != 0:
        if user:
            uid, _ = account(user, group)
            if uid != os.geteuid():
                raise PrivilegeError(f'user: cannot switch to "{user}": not started as root')
        return
    if not user:
        log.warning(
            "running as root: set `user` in the configuration to drop privileges "
            "after binding the listeners"
        )
        return
    uid, gid = account(user, group)
    try:
        _give(data_dir, uid, gid)
    except OSError as exc:
        raise PrivilegeError(f'user: cannot switch to "{user}": {exc.strerror or exc}') from None
    switch_user(user, group)
    log.info("dropped privileges: now running as %s (uid %d, gid %d)", user, uid, gid)


def switch_user(user: str, group: str = "") -> None:
    """Become `user` (and `group`) for good: supplementary groups dropped,
    then setgid, then setuid; PrivilegeError if any step fails. Only as root;
    the checker process (app/checker.py) uses it without `drop`'s data walk."""
    uid, gid = account(user, group)
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise PrivilegeError(f'user: cannot switch to "{user}": {exc.strerror or exc}') from None
    if os.getuid() != uid or os.geteuid() != uid:
        raise PrivilegeError(f'user: still uid {os.geteuid()} after switching to "{user}"')
