"""Archive: a copy of every message pigeon accepts, one file each, in a directory.

    [[plugins]]
    path = "/usr/share/pigeon/plugins/archive.py"   # or a copy next to pigeon.toml
    [plugins.config]
    directory = "/var/lib/pigeon/archive"           # made (0700) if missing
    fsync = true                                    # each copy on disk before the 250

At the end of the data, before pigeon commits the message, the message as
it will be queued (our Received: field first, the body streamed, never read
whole into memory) is written to `<directory>/<queue ID>.eml` through a
temporary file renamed into place, so a reader never sees half a copy. The
copy is made in a worker thread, within the plugin's `timeout`. If it
cannot be written the message is refused with 451 4.3.0 (the archive is
meant to hold every message: try again later rather than accept without a
copy). A message refused after this stage (a failed commit) may have a copy
without having been accepted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pigeon.api import Message, PluginContext, SessionFacts


class Plugin:
    @dataclass(frozen=True)
    class Settings:
        directory: Path
        fsync: bool = True

    def __init__(self, settings: Settings, context: PluginContext) -> None:
        self.directory = settings.directory
        self.fsync = settings.fsync
        self.log = context.log

    async def end_of_data(self, session: SessionFacts, message: Message) -> None:
        path = await asyncio.to_thread(self._copy, message)
        self.log.info("%s: archived as %s", message.queue_id, path)

    def _copy(self, message: Message) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.directory / f"{message.queue_id}.eml"
        temporary = self.directory / f".{message.queue_id}.tmp"
        with open(temporary, "wb") as out, message.body() as body:
            out.write(message.header_section())
            out.write(b"\r\n")
            shutil.copyfileobj(body, out, 65536)
            if self.fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, final)
        return final
