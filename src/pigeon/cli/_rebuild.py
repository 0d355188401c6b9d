"""`pigeon queue rebuild [--from-files]`: the queue database, rebuilt from the message files.

Contract:
  * Offline: it holds <queue_dir>/owner.lock exclusively while it works, so
    it refuses while pigeon runs (75 EX_TEMPFAIL: stop pigeon, try again),
    and pigeon refuses to start while it works (queue/store.py).
  * Without --from-files: every file in <queue_dir>/msg/ that has no row in
    queue.db gets one, rebuilt from the envelope in the file's preamble,
    whatever database the file was written under (for a queue.db restored
    from a backup: run it after every restore). Files that cannot be
    rebuilt are quarantined as 'corrupt'; nothing is deleted except tmp/
    debris and empty files. A damaged queue.db is refused (73) with the
    line that names --from-files.
  * --from-files: first moves queue.db (and -wal, -shm) aside, to
    queue.db.corrupt-<UTC time> when damaged (queue.db.replaced-<time> when
    it was sound), then rebuilds everything from the files. Per-recipient
    status lived only in the database: rebuilt messages go to all their
    recipients again (some may get a second copy, none is skipped).
  * A shared store (`queue.store` = a PostgreSQL URL, docs/cluster.md) has
    no local message files to rebuild from: refused (78), naming the key;
    the database's own backups restore that queue.
  * Output: the store's warnings on stderr ("pigeon: ..."), then one
    summary line on stdout. Exit: 0 done, 73 damaged database (without
    --from-files) or queue not writable, 75 pigeon is running, 78
    configuration error (from the caller).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, fail
from pigeon.config.schema import Config

EX_TEMPFAIL = 75


def run_rebuild(config: Config, args: argparse.Namespace) -> int:
    from pigeon.queue.dbfile import StoreBusy
    from pigeon.queue.rebuild import rebuild
    from pigeon.vocab.errors import StoreError

    if config.queue.store:
        return fail(
            "queue.store is a shared PostgreSQL database: its queue has no local files "
            "to rebuild from; restore the database from its backups (docs/cluster.md)",
            EX_CONFIG,
        )
    queue_log = logging.getLogger("pigeon.queue")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pigeon: %(message)s"))
    queue_log.addHandler(handler)
    try:
        report = rebuild(config.queue_dir, from_files=args.from_files, fsync=config.queue.fsync)
    except StoreBusy as exc:
        return fail(str(exc), EX_TEMPFAIL)
    except StoreError as exc:
        return fail(str(exc), EX_CANTCREAT)
    except OSError as exc:
        return fail(
            f"cannot rebuild the queue {config.queue_dir}: {exc.strerror or exc}", EX_CANTCREAT
        )
    finally:
        queue_log.removeHandler(handler)
    before = report.queued - len(report.rebuilt) - len(report.quarantined)
    print(
        f"rebuilt {len(report.rebuilt)} message(s) from {config.queue_dir / 'msg'}; "
        f"{len(report.quarantined)} quarantined as corrupt; {before} already queued"
    )
    return 0
