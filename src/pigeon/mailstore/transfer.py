"""Messages into a folder: IMAP COPY, MOVE (RFC 6851) and APPEND, with UIDPLUS data.

Contract:
  * `copy(source, infos, dest, move)`: every message in `infos` (as the
    session's view has them, ascending UID; one expunged meanwhile is
    skipped) gets
    a file of its own in the destination's cur/, a hard link of the source
    when both are on one file system (no data copied), else a copy made
    durable (fsync); its flags as they are (keywords re-lettered through
    the destination's `dovecot-keywords`), its internal date kept in the
    new unique name. The destination's directory is fsync'ed, then the new
    files get UIDs there. Returns ([(source uid, destination uid)], the
    destination's UIDVALIDITY): RFC 4315 COPYUID.
  * With `move`, the sources are removed only after that: a crash at any
    instant leaves the message in the source, the destination, or both;
    never in neither.
  * `append(state, data, flags, internaldate)`: written to tmp/ (LF line
    endings, like delivery, with Dovecot's ,S= and ,W= sizes), fsync'ed,
    its mtime set to the internal date, linked into cur/ with its flags,
    the directory fsync'ed, then numbered: (uidvalidity, uid), RFC 4315
    APPENDUID.
  * FolderError: no such destination, or a 27th keyword; OSError: the disk.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Iterable

from pigeon.fsutil import fsync_dir, write_synced
from pigeon.mailstore.errors import FolderError
from pigeon.mailstore.flags import INFO
from pigeon.mailstore.keywords import TooManyKeywords
from pigeon.mailstore.message import MessageInfo
from pigeon.mailstore.names import sized_name, unique_base
from pigeon.mailstore.state import MaildirState, kept_letters

__all__ = ["append", "copy"]


def _letters(state: MaildirState, flags: Iterable[str], kept: str = "") -> str:
    with state.lock:
        state.refresh()
        try:
            letters = state.keywords.flags_to_letters(frozenset(flags)) + kept
        except TooManyKeywords as e:
            raise FolderError(str(e)) from None
    return "".join(sorted(set(letters)))


def _size_fields(base: str) -> str:
    """The ",S=...,W=..." part of a unique name, "" when it has none."""
    at = base.find(",S=")
    if at < 0:
        at = base.find(",W=")
    return base[at:] if at >= 0 else ""


def _place(src: str, dst: str) -> None:
    """`dst` becomes a copy of `src`: a hard link, else a durable copy."""
    try:
        os.link(src, dst)
        return
    except FileNotFoundError:
        raise
    except OSError:
        pass  # EXDEV (another file system), EPERM, EMLINK: copy the data
    tmp = dst + ".copying"
    shutil.copyfile(src, tmp)
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, dst)


def copy(
    source: MaildirState, infos: list[MessageInfo], dest: MaildirState, move: bool
) -> tuple[list[tuple[int, int]], int]:
    """See the module contract; `infos` as the session's view has them."""
    cur_dir = os.path.join(dest.maildir, "cur")
    placed: list[tuple[int, str]] = []
    by_flags: dict[tuple[frozenset[str], str], str] = {}  # few distinct flag sets
    letters = []
    for info in infos:
        key = (info.flags, kept_letters(info.letters, source.keywords))
        if key not in by_flags:
            by_flags[key] = _letters(dest, *key)
        letters.append(by_flags[key])
    with dest.changing():
        for info, flags in zip(infos, letters):
            seconds = int(info.internaldate.timestamp())
            name = unique_base(seconds) + _size_fields(info.base) + INFO + flags
            current: MessageInfo | None = info
            for _ in range(2):  # bounded: once more under the name a rescan found
                if current is None:
                    break
                try:
                    _place(current.path, os.path.join(cur_dir, name))
                    placed.append((info.uid, name))
                    break
                except FileNotFoundError:
                    with source.lock:
                        source.refresh()
                        current = source.by_base.get(info.base)
        if not placed:
            return [], _validity(dest)
        fsync_dir(cur_dir)
        dest_uids = dest.register([name for _, name in placed])
    pairs = [(src_uid, dst_uid) for (src_uid, _), dst_uid in zip(placed, dest_uids)]
    if move:
        source.expunge([src for src, _ in pairs], deleted_only=False)
    return pairs, _validity(dest)


def _validity(state: MaildirState) -> int:
    with state.lock:
        state.refresh()
        assert state.uidlist is not None
        return state.uidlist.uidvalidity


def append(
    state: MaildirState,
    data: bytes,
    flags: Iterable[str] = (),
    internaldate: _dt.datetime | None = None,
) -> tuple[int, int]:
    letters = _letters(state, flags)
    stored = data.replace(b"\r\n", b"\n")
    seconds = None if internaldate is None else int(internaldate.timestamp())
    base = sized_name(unique_base(seconds), len(stored), len(stored) + stored.count(b"\n"))
    tmp = os.path.join(state.maildir, "tmp", base)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        write_synced(fd, stored)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    if internaldate is not None:  # Dovecot reads the internal date from the mtime
        os.utime(tmp, (internaldate.timestamp(), internaldate.timestamp()))
    name = base + INFO + letters
    cur_dir = os.path.join(state.maildir, "cur")
    with state.changing():
        try:
            os.link(tmp, os.path.join(cur_dir, name))
        except FileExistsError:
            os.unlink(tmp)
            raise
        except OSError:
            os.rename(tmp, os.path.join(cur_dir, name))
        else:
            os.unlink(tmp)
        fsync_dir(cur_dir)
        (uid,) = state.register([name])
    return _validity(state), uid
