#!/usr/bin/env python3
"""The inbound checks alone: `MailAuth.end_of_data` per message, in process (issue 13, item 7).

What bench/mail_auth_cost.py measures is the accept rate of two whole
servers; this measures only the stage, in one process, on the same kind of
message (1 KB, DKIM-signed rsa-sha256 2048 relaxed/relaxed, from bench.test,
whose SPF passes 127.0.0.2 and whose DMARC record is p=reject), with SPF,
DKIM and DMARC enforced and the DNS answered by a server on loopback
through pigeon's resolver and TTL cache. One message is checked first (it
fills the cache); then every message is checked `--passes` times.

  * Time: the CPU time per message of each pass. Shared machines make
    this vary by half from one run to the next; compare two versions by
    alternating their runs.
  * `--instructions`: the instructions per message, counted by valgrind
    (callgrind): the same messages checked with `--passes 1` and with
    `--passes 0`, the difference divided by the messages. Deterministic to
    about 0.05 % (hash seed fixed), so a change of a few per cent shows;
    it takes a minute or two.

  * `--checker GROUP`: the same messages through the checker process's
    own path instead (app/checker.py: frames in, `GROUP` requests per
    read, the checks, the answers framed, and the server's decoding of
    them, policy/mailauth/remote.py), in this process: what the checker
    process would spend per message with its caches warm and a core of
    its own. Under the load of bench/mail_auth_cost.py the real process
    spends about twice that (docs/benchmarks.md, eleventh session).

Loopback only; bounded by `--messages`.

Usage: .venv/bin/python bench/mail_auth_micro.py [--messages 2000] [--passes 3]
       .venv/bin/python bench/mail_auth_micro.py --instructions [--messages 300]
       .venv/bin/python bench/mail_auth_micro.py --checker 5 [--messages 2000] [--passes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402,F401 (puts src/ on sys.path)
from mail_auth_cost import DOMAIN, make_key, signed_messages, zone  # noqa: E402

from pigeon.config import load_config  # noqa: E402
from pigeon.config.schema import Config  # noqa: E402
from pigeon.dns.cache import CachingResolver  # noqa: E402
from pigeon.dns.stub import StubResolver  # noqa: E402
from pigeon.policy.api import SessionFacts  # noqa: E402
from pigeon.policy.mailauth import build_mail_auth  # noqa: E402
from pigeon.policy.message import SpoolMessage  # noqa: E402
from pigeon.policy.relay import RelayNetworks  # noqa: E402
from pigeon.proto.params import RcptParams  # noqa: E402
from pigeon.queue.model import Envelope, Recipient  # noqa: E402
from pigeon.queue.store import QueueStore  # noqa: E402
from pigeon.testing.dnsserver import DnsServer  # noqa: E402
from pigeon.vocab.address import Address  # noqa: E402

RECEIVED = (
    b"Received: from client (client [127.0.0.2])\r\n"
    b"\tby mx.bench.local; Sun, 6 Dec 2026 07:00:00 +0000\r\n"
)


class _NoRecords:
    def dmarc(self, record: object) -> None:
        pass


def _config(dns_port: int) -> Config:
    """SPF, DKIM and DMARC enforced; our DNS server on loopback (the checker
    process builds its resolver from `delivery.dns_servers`)."""
    return load_config(
        overrides={
            "hostname": "mx.bench.local",
            "relay_networks": ["127.0.0.1/32"],
            "mail_auth": {"spf": "enforce", "dkim": "enforce", "dmarc": "enforce"},
            "delivery": {"dns_servers": [f"127.0.0.1:{dns_port}"]},
        }
    )


def _passed(value: str) -> bool:
    """The Authentication-Results value says all three checks passed."""
    return all(w in value for w in ("dkim=pass", "spf=pass", "dmarc=pass"))


async def _timed_passes(
    passes: int, count: int, one_pass: Callable[[], Awaitable[None]]
) -> list[float]:
    """CPU seconds per message of each of `passes` runs of `one_pass` over `count` messages."""
    out = []
    for _ in range(passes):
        started = time.process_time()
        await one_pass()
        out.append((time.process_time() - started) / count)
    return out


def check(txt: str, msgs: list[bytes], passes: int) -> list[float]:
    """CPU seconds per message of each pass (module docstring)."""
    with DnsServer({DOMAIN: zone(txt)}) as dnsd, tempfile.TemporaryDirectory() as tmp:
        config = _config(dnsd.port)
        resolver = CachingResolver(StubResolver([("127.0.0.1", dnsd.port)], timeout=2.0))
        stage = build_mail_auth(
            config, resolver, RelayNetworks(config.relay_networks), _NoRecords()
        )
        store = QueueStore(Path(tmp) / "queue", fsync=False)
        store.open()
        facts = SessionFacts(
            "127.0.0.2",
            helo="client.bench.test",
            sender=Address("bench", DOMAIN),
            recipients=[(Address("bench", "localhost"), RcptParams())],
        )
        spools = []
        for msg in msgs:
            spool = store.new_spool(Envelope("", f"bench@{DOMAIN}", [Recipient("bench@localhost")]))
            spool.write(RECEIVED + msg)
            spools.append(spool)

        def view(spool: object) -> SpoolMessage:
            return SpoolMessage(spool, header_limit=1 << 20, eight_bit=False)  # type: ignore[arg-type]

        async def run() -> list[float]:
            first = await stage.end_of_data(facts, view(spools[0]))
            value = first.headers[0].value if first is not None and first.headers else ""
            if not _passed(value):
                raise SystemExit(f"the checks did not pass: {first!r}")

            async def one_pass() -> None:
                for spool in spools:
                    await stage.end_of_data(facts, view(spool))

            return await _timed_passes(passes, len(spools), one_pass)

        try:
            return asyncio.run(run())
        finally:
            store.close()


class _Sink:
    """The checker process's transport, kept in memory (`--checker`)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return False


def check_in_checker(txt: str, msgs: list[bytes], passes: int, group: int) -> list[float]:
    """CPU seconds per message of each pass through the checker process's
    own path (app/checker.py `_Server`: frames in, the checks, answers out),
    in this process, `group` requests per read, plus the server's decoding
    of the answers (policy/mailauth/remote.py)."""
    from pigeon.app.checker import _Server
    from pigeon.policy.mailauth.remote import decode, frame, read_frames

    with DnsServer({DOMAIN: zone(txt)}) as dnsd:
        config = _config(dnsd.port)
        facts = ("127.0.0.2", "client.bench.test", ("bench", DOMAIN))
        wanted = ("enforce", "enforce", "enforce", "off")
        requests = [frame(("check", i, facts, wanted, RECEIVED + m)) for i, m in enumerate(msgs)]

        async def run() -> list[float]:
            loop = asyncio.get_running_loop()
            server = _Server(loop.create_future())
            sink = _Sink()
            server.connection_made(sink)  # type: ignore[arg-type]
            server.data_received(frame(("config", config)))
            server.data_received(requests[0])
            first = None
            for _ in range(200):  # the first check asks the DNS server
                await asyncio.sleep(0.01)
                answers = [pickle.loads(p) for p in read_frames(sink.out)]
                first = next((a for a in answers if len(a) == 2), None)
                if first is not None:
                    break
            verdict = decode(first[1]).verdict if first is not None else None
            value = verdict.headers[0].value if verdict is not None and verdict.headers else ""
            if not _passed(value):
                raise SystemExit(f"the checks did not pass in the checker's path: {first!r}")

            async def one_pass() -> None:
                for at in range(0, len(requests), group):
                    server.data_received(b"".join(requests[at : at + group]))
                    await asyncio.sleep(0)
                    for payload in read_frames(sink.out):
                        decode(pickle.loads(payload)[1])

            return await _timed_passes(passes, len(requests), one_pass)

        return asyncio.run(run())


def _collected(stderr: str) -> int:
    found = re.search(r"Collected : (\d+)", stderr)
    if found is None:
        raise SystemExit(f"valgrind said no count:\n{stderr[-2000:]}")
    return int(found.group(1))


def instructions(messages: int) -> int:
    """Instructions per message, by callgrind (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="bench-auth-micro-") as tmp:
        data = Path(tmp) / "messages.pickle"
        pem, txt = make_key()  # signed here: dkimpy's signing under valgrind takes ages
        data.write_bytes(pickle.dumps((txt, signed_messages(pem, messages))))
        counts = []
        for passes in (0, 1):
            done = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/callgrind.{passes}",
                    sys.executable,
                    __file__,
                    "--from-file",
                    str(data),
                    "--passes",
                    str(passes),
                ],
                env={**os.environ, "PYTHONHASHSEED": "0"},
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"the run under valgrind failed:\n{done.stderr[-2000:]}")
            counts.append(_collected(done.stderr))
    return (counts[1] - counts[0]) // messages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument(
        "--checker",
        type=int,
        metavar="GROUP",
        help="time the checker process's path instead (GROUP requests per read)",
    )
    ap.add_argument("--from-file", type=Path, help=argparse.SUPPRESS)  # the valgrind runs
    args = ap.parse_args(argv)
    if args.instructions:
        count = instructions(args.messages or 300)
        print(f"mail auth checks: {count} instructions per message")
        return 0
    if args.from_file is not None:
        txt, msgs = pickle.loads(args.from_file.read_bytes())
    else:
        pem, txt = make_key()
        msgs = signed_messages(pem, args.messages or 2000)
    if args.checker:
        timed = check_in_checker(txt, msgs, args.passes, args.checker)
    else:
        timed = check(txt, msgs, args.passes)
    for number, seconds in enumerate(timed, 1):
        print(f"pass {number}: {seconds * 1e6:.0f} us of CPU per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
