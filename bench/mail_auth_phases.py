#!/usr/bin/env python3
"""Where a message's time goes under the mail-auth load, seen from the client (issue 13, item 7).

The load of bench/mail_auth_cost.py (the same signed 1 KB messages, the
same DNS zone on loopback, the same "off" or "on" `[mail_auth]`, the client
on 127.0.0.2), against one pigeon, with each message's two round trips
timed apart:

  commands     MAIL FROM, RCPT TO and DATA sent together, until DATA's 354
  end of data  the message and its ".", until the 250 (the checks, then the
               durable write: for a local recipient the Maildir copy itself,
               qmgr/direct.py)

It prints the rate and the median and 90th percentile of each. A warm-up
of 200 messages comes first and is not counted.

    .venv/bin/python bench/mail_auth_phases.py off 3000 10
    .venv/bin/python bench/mail_auth_phases.py on 3000 10 'checker_above = 0'

The fourth argument is appended to the `[mail_auth]` table. Loopback only;
the load is bounded by the message count and --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mail_auth_cost as cost  # noqa: E402 (beside this file; puts src/ on sys.path)

from pigeon.testing.dnsserver import DnsServer  # noqa: E402
from pigeon.testing.live import PigeonProcess  # noqa: E402


async def _session(port: int, msgs: list[bytes], commands: list, ends: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    try:
        await cost._reply(reader)
        writer.write(b"EHLO client.bench.test\r\n")
        await cost._reply(reader)
        for msg in msgs:
            t0 = time.perf_counter()
            writer.write(
                f"MAIL FROM:<bench@{cost.DOMAIN}>\r\nRCPT TO:<{cost.RECIPIENT}>\r\nDATA\r\n".encode()
            )
            for _ in range(3):
                await cost._reply(reader)
            t1 = time.perf_counter()
            writer.write(msg + b".\r\n")
            reply = await cost._reply(reader)
            if not reply.startswith(b"250"):
                raise RuntimeError(f"refused: {reply!r}")
            commands.append(t1 - t0)
            ends.append(time.perf_counter() - t1)
        writer.write(b"QUIT\r\n")
        await cost._reply(reader)
    finally:
        writer.close()


async def _load(port: int, msgs: list[bytes], sessions: int, timeout: float):
    commands: list[float] = []
    ends: list[float] = []
    shares = [msgs[i::sessions] for i in range(sessions)]
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(_session(port, s, commands, ends) for s in shares if s)), timeout
    )
    return time.perf_counter() - started, commands, ends


def _ms(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))] * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checks", choices=("off", "on"))
    ap.add_argument("messages", type=int)
    ap.add_argument("sessions", type=int)
    ap.add_argument("extra", nargs="?", default="", help="lines appended to [mail_auth]")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args(argv)
    pem, txt = cost.make_key()
    msgs = cost.signed_messages(pem, args.messages)
    checks = cost.ON_TOML if args.checks == "on" else cost.OFF_TOML
    with tempfile.TemporaryDirectory() as tmp, DnsServer({cost.DOMAIN: cost.zone(txt)}) as dns:
        toml = cost.server_toml(dns.port) + checks + args.extra + "\n"
        server = PigeonProcess(Path(tmp) / "pigeon", toml)
        server.start(timeout=30)
        try:
            asyncio.run(_load(server.port, msgs[:200], args.sessions, args.timeout))
            took, commands, ends = asyncio.run(
                _load(server.port, msgs, args.sessions, args.timeout)
            )
        finally:
            server.stop()
    print(
        f"{args.checks} {args.extra.strip()!r}: {args.messages / took:.0f} msg/s; "
        f"commands p50 {_ms(commands, 0.5):.2f} p90 {_ms(commands, 0.9):.2f} ms; "
        f"end of data p50 {_ms(ends, 0.5):.2f} p90 {_ms(ends, 0.9):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
