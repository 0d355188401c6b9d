#!/usr/bin/env python3
"""The floor of a Python SMTP server here: canned replies on uvloop, no parsing, no storage.

Issue 16 asks pigeon for at most half of Postfix's CPU per message. This
script measures what the cheapest possible Python server costs on the same
machine and load, so docs/benchmarks.md can say how much of pigeon's CPU is
the language and the event loop rather than pigeon: an asyncio Protocol on
uvloop that answers smtp-source's conversation (greeting, EHLO, MAIL, RCPT,
DATA, the end of data, QUIT) with fixed replies, looks only for the end of
lines and of the data, and keeps nothing. It is NOT an MTA: no checks, no
queue, no fsync, no Maildir.

    .venv/bin/python bench/python_floor.py [--sessions 1,10,50] [--messages 2000]

Prints accepted msg/s and CPU ms per message (utime+stime of this process)
for each session count. `--maildir DIR` adds the storage: each message is
written into a Maildir (tmp/, fsync, link into new/, unlink, fsync of new/)
in a worker thread before its 250, one at a time per message (no batching):
roughly "a bare aiosmtpd handler that fsyncs into a Maildir". Loopback only; every load bounded in messages and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import threading
import time

try:
    import uvloop
except ImportError:  # pragma: no cover - pigeon depends on it
    uvloop = None  # type: ignore[assignment]

REPLIES = {
    b"EHLO": b"250-floor\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    b"HELO": b"250 floor\r\n",
    b"MAIL": b"250 2.1.0 Ok\r\n",
    b"RCPT": b"250 2.1.5 Ok\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
}


#: --maildir: where each message is written (tmp/, fsync, link into new/, fsync
#: new/) before its 250, in a worker thread: the storage part of the floor.
MAILDIR = ""
_seq = iter(range(1 << 62))


def store(body: bytes) -> None:
    name = f"{time.time():.6f}.{os.getpid()}_{next(_seq)}.floor"
    tmp, new = os.path.join(MAILDIR, "tmp", name), os.path.join(MAILDIR, "new", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body.replace(b"\r\n", b"\n"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, new)
    os.unlink(tmp)
    dfd = os.open(os.path.join(MAILDIR, "new"), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Floor(asyncio.Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.t = transport
        self.buf = b""
        self.body = b""
        self.data = False
        transport.write(b"220 floor ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        buf = self.buf + chunk
        out = []
        while True:
            if self.data:
                end = buf.find(b"\r\n.\r\n")
                if end < 0:
                    if MAILDIR:
                        self.body += buf[:-4]
                    buf = buf[-4:]
                    break
                body = self.body + buf[: end + 2] if MAILDIR else b""
                buf = buf[end + 5 :]
                self.data = False
                self.body = b""
                if MAILDIR:  # the reply waits for the Maildir copy, as a real server's must
                    self.t.write(b"".join(out))
                    out = []
                    loop = asyncio.get_running_loop()
                    done = loop.run_in_executor(None, store, body)
                    done.add_done_callback(lambda _f: self.t.write(b"250 2.0.0 Ok: queued\r\n"))
                    self.buf = buf
                    return  # smtp-source sends nothing more before this reply
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            nl = buf.find(b"\r\n")
            if nl < 0:
                break
            verb = buf[:4].upper()
            buf = buf[nl + 2 :]
            out.append(REPLIES.get(verb, b"502 5.5.2 Error\r\n"))
            if verb == b"DATA":
                self.data = True
                buf = b"\r\n" + buf  # the data may end at once (an empty message)
            elif verb == b"QUIT":
                self.t.write(b"".join(out))
                self.t.close()
                return
        self.buf = buf
        if out:
            self.t.write(b"".join(out))


def serve(port_box: list[int], ready: threading.Event, stop: threading.Event) -> None:
    loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(Floor, "127.0.0.1", 0, backlog=1024))
    port_box.append(server.sockets[0].getsockname()[1])
    ready.set()

    async def wait() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)

    loop.run_until_complete(wait())
    server.close()
    loop.close()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="1,10,50")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument(
        "--maildir", help="write each message into this Maildir (fsynced) before its 250"
    )
    args = ap.parse_args(argv)
    global MAILDIR
    if args.maildir:
        MAILDIR = args.maildir
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(MAILDIR, sub), exist_ok=True)
    port: list[int] = []
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=(port, ready, stop), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        for s in (int(x) for x in args.sessions.split(",")):

            def load(messages: int, s: int = s) -> None:
                cmd = ["smtp-source", "-4", "-s", str(s), "-l", str(args.size), "-m"]
                cmd += [str(messages), "-t", "x@floor.test", f"127.0.0.1:{port[0]}"]
                subprocess.run(cmd, check=True, timeout=args.timeout)

            load(200)  # warm-up
            c0, t0 = cpu(), time.perf_counter()
            load(args.messages)
            el, used = time.perf_counter() - t0, cpu() - c0
            print(
                f"{s:>3} sessions: {args.messages / el:7.0f} msg/s, "
                f"CPU {1000 * used / args.messages:.2f} ms/msg (python floor"
                + (", Maildir with fsync" if MAILDIR else ", no storage")
                + ")",
                flush=True,
            )
    finally:
        stop.set()
        thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
