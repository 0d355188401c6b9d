#!/usr/bin/env python3
"""A/B: this tree's pigeon against an earlier commit's, in the same run.

A refactor must not slow pigeon down (issue "Seams before breadth": >= 0.95x
of the rates before). Machines here are shared and noisy, so the two
versions run side by side: the same smtp-source loads of bench/suite.py's
inbound scenarios (1 KB at 1, 10 and 50 sessions, 100 KB at 10, delivered
into the Maildir), alternating which goes first in each round, and the table
gives each version's median and the ratio new/base (rates: higher is
better; cpu_s_per_1k, the server's CPU seconds per 1000 messages: lower is).

    .venv/bin/python bench/ab.py --base main~5 --rounds 5 [--json out.json]
    .venv/bin/python bench/ab.py --base HEAD --new-toml 'workers = 2'   # two settings, one tree

The base version is `git archive BASE src` unpacked into a temporary
directory and run with PYTHONPATH pointing at it (same interpreter, same
dependencies). Only loopback; every load is bounded in messages and time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py, beside this file)
import suite  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Version(suite.Pigeon):
    """pigeon from a given source tree (None: this checkout)."""

    def __init__(self, workdir: Path, name: str, src: Path | None, toml_top: str = "") -> None:
        super().__init__(workdir, tag=name, toml_top=toml_top)
        self.name, self.src = name, src

    def start(self) -> None:
        from pigeon.testing.live import PigeonProcess

        env = {"PYTHONPATH": str(self.src)} if self.src is not None else None
        self.proc = PigeonProcess(self.workdir, self.toml, env=env)
        self.proc.start(timeout=30)
        self.port = self.proc.port
        self.new_dir = self.proc.data_dir / "mailboxes" / "localhost" / "bench" / "new"


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. main~5)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--only", help="comma-separated scenario keys (in-1,in-10,in-50,big-10)")
    ap.add_argument("--new-toml", default="", help="extra top-level settings of this tree's pigeon")
    ap.add_argument("--base-toml", default="", help="extra top-level settings of the base's pigeon")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    source = common.smtp_source()
    if source is None:
        sys.exit("smtp-source (Debian package postfix) is needed")
    scs = [sc for sc in suite.scenarios(False) if sc["key"] != "reuse-10"]
    if args.only:
        wanted = {k.strip() for k in args.only.split(",")}
        scs = [sc for sc in scs if sc["key"] in wanted]
    with tempfile.TemporaryDirectory(prefix="pigeon-ab-") as tmp:
        work = Path(tmp)
        base_src = export(args.base, work / "base")
        targets = {
            "new": Version(work, "new", None, args.new_toml),
            "base": Version(work, "base", base_src, args.base_toml),
        }
        for t in targets.values():
            t.start()
        results: dict[str, dict[str, list[dict]]] = {}
        try:
            for t in targets.values():  # untimed warm-up
                suite.one_run(source, t, {"s": 10, "size": 1024}, 100, args)
            names = list(targets)
            for rnd in range(args.rounds):
                for i, sc in enumerate(scs):
                    m = max(10, int(sc["m"] * args.scale))
                    order = names if (rnd + i) % 2 == 0 else names[::-1]
                    for name in order:
                        r = suite.one_run(source, targets[name], sc, m, args)
                        results.setdefault(sc["key"], {}).setdefault(name, []).append(r)
                        print(
                            f"round {rnd + 1} {sc['key']:7s} {name:4s} "
                            f"accept {r['accept']:7.0f}/s delivered {r.get('delivered') or 0:7.0f}/s"
                            + (f"  ERROR {r['error']}" if "error" in r else ""),
                            flush=True,
                        )
        finally:
            for t in targets.values():
                t.stop()
    rows = []
    settings = "".join(
        f", {n} with {t!r}" for n, t in (("new", args.new_toml), ("base", args.base_toml)) if t
    )
    print(f"\n# A/B: this tree vs {args.base}{settings}, {args.rounds} rounds, medians (msg/s)")
    print(f"{'scenario':10s} {'key':12s} {'new':>8s} {'base':>8s} {'new/base':>9s}")
    for sc in scs:
        for key in ("accept", "delivered", "cpu_s_per_1k"):
            vals = {
                n: [r[key] for r in results[sc["key"]][n] if r.get(key)] for n in ("new", "base")
            }
            if not vals["new"] or not vals["base"]:
                continue
            new, base = statistics.median(vals["new"]), statistics.median(vals["base"])
            rows.append({"scenario": sc["key"], "key": key, "new": new, "base": base})
            fmt = ".2f" if key == "cpu_s_per_1k" else ".0f"  # CPU s per 1000 msgs: lower is better
            print(f"{sc['key']:10s} {key:12s} {new:8{fmt}} {base:8{fmt}} {new / base:9.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"base": args.base, "rows": rows, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
