"""pigeon.privileges: giving the data directory to `user` as root never follows a link.

The attacker is the pigeon user itself (a compromised delivery, say): it owns
the data directory and may plant links there, or swap a file or directory for
a link at the instant after root has looked at it. Root must never chown or
chmod anything outside the tree.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from pigeon import privileges
from pigeon.privileges import PrivilegeError, make_data_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")

NOBODY = pwd.getpwnam("nobody")
UID, GID = NOBODY.pw_uid, NOBODY.pw_gid


def root_owned(path: Path, *, directory: bool = False) -> Path:
    """A root-owned file (or directory) outside the data directory, like /etc/shadow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        path.mkdir()
        path.chmod(0o755)
    else:
        path.write_text("secret\n")
        path.chmod(0o640)
    os.chown(path, 0, 0)
    return path


def untouched(path: Path, mode: int) -> bool:
    st = os.stat(path)
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, mode)


def test_the_tree_is_given_and_made_private(tmp_path):
    data = tmp_path / "data"
    (data / "queue" / "msg").mkdir(parents=True, mode=0o755)
    for name, mode in (("queue.db", 0o600), ("pigeon.pid", 0o644), ("odd", 0o777)):
        (data / "queue" / name).write_text(name)
        (data / "queue" / name).chmod(mode)
    privileges._give(data, UID, GID)
    for path in (data, data / "queue", data / "queue" / "msg"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700), path
    for name, mode in (("queue.db", 0o600), ("pigeon.pid", 0o644), ("odd", 0o744)):
        st = os.stat(data / "queue" / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, mode), name


def test_planted_links_are_not_followed(tmp_path, caplog):
    secret = root_owned(tmp_path / "etc" / "shadow")
    system_dir = root_owned(tmp_path / "etc" / "ssl", directory=True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "to-file").symlink_to(secret)
    (data / "to-dir").symlink_to(system_dir)
    os.link(secret, data / "hardlink")  # possible where fs.protected_hardlinks=0
    privileges._give(data, UID, GID)
    assert untouched(secret, 0o640)
    assert untouched(system_dir, 0o755)
    assert os.lstat(data / "to-file").st_uid == 0
    assert "not giving" in caplog.text and "hard links" in caplog.text


def swap_after_check(monkeypatch, victim: Path, target: Path) -> list[bool]:
    """Swap `victim` for a link to `target` right after pigeon has looked at it.

    Whatever check the walk does on the victim (a path check such as
    os.path.islink, or fstat on a descriptor opened on it), the attacker wins
    the race at once: the swap happens as the check returns.
    """
    swapped: list[bool] = []

    def swap() -> None:
        if swapped:
            return
        swapped.append(True)
        if victim.is_dir():
            victim.rename(victim.with_name(victim.name + ".moved"))
        else:
            victim.unlink()
        victim.symlink_to(target)

    real_islink, real_fstat = os.path.islink, os.fstat

    def islink(path) -> bool:
        answer = real_islink(path)
        if os.fspath(path) == str(victim):
            swap()
        return answer

    def fstat(fd: int):
        answer = real_fstat(fd)
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(victim):
                swap()
        except OSError:
            pass
        return answer

    monkeypatch.setattr(os.path, "islink", islink)
    monkeypatch.setattr(os, "fstat", fstat)
    return swapped


def test_a_file_swapped_for_a_link_during_the_walk(tmp_path, monkeypatch):
    secret = root_owned(tmp_path / "etc" / "shadow")
    data = tmp_path / "data"
    (data / "queue").mkdir(parents=True)
    victim = data / "queue" / "queue.db"
    victim.write_text("db")
    swapped = swap_after_check(monkeypatch, victim, secret)
    privileges._give(data, UID, GID)
    assert swapped, "the walk never looked at the file"
    assert untouched(secret, 0o640)


def test_a_directory_swapped_for_a_link_during_the_walk(tmp_path, monkeypatch):
    system_dir = root_owned(tmp_path / "etc" / "ssl", directory=True)
    inside = root_owned(system_dir / "private.key")
    data = tmp_path / "data"
    victim = data / "mailboxes"
    (victim / "example.test").mkdir(parents=True)
    swapped = swap_after_check(monkeypatch, victim, system_dir)
    privileges._give(data, UID, GID)
    assert swapped, "the walk never looked at the directory"
    assert untouched(system_dir, 0o755)
    assert untouched(inside, 0o640)


def test_a_data_dir_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "data"
    link.symlink_to(real)
    with pytest.raises(
        PrivilegeError, match=r"data_dir: .*/data is a symbolic link: name the real"
    ):
        make_data_dir(link, "nobody")
    with pytest.raises(PrivilegeError, match=r"data_dir: .*/data is a symbolic link"):
        privileges._give(link, UID, GID)
    assert untouched(real, stat.S_IMODE(os.stat(real).st_mode))
    make_data_dir(link, "")  # no user to give it to: a link is the operator's business


def test_make_data_dir_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        make_data_dir(tmp_path / "fresh", "")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700
