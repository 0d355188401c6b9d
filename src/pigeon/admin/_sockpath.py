"""Unix socket paths longer than sockaddr_un allows (108 bytes on Linux).

Contract: `short_path(path)` is a context manager yielding a name that
reaches `path` and fits: `path` itself when it is short enough, else
"/proc/self/fd/N/<name>" through an O_PATH descriptor of the directory
(Linux resolves it for bind() and connect() alike). Deep test directories
and long data_dir paths would otherwise make the control socket
unusable. On systems without /proc the original path is yielded and the
OS reports the error.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

MAX_SUN_PATH = 107          # 108 bytes including the terminating NUL


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    text = os.fspath(path)
    if len(os.fsencode(text)) <= MAX_SUN_PATH or not os.path.isdir("/proc/self/fd"):
        yield text
        return
    flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY
    fd = os.open(Path(text).parent, flags)
    try:
        yield f"/proc/self/fd/{fd}/{Path(text).name}"
    finally:
        os.close(fd)
