"""The milter client's command sequence (policy/milter.py) against a scripted peer.

What a libmilter milter cannot show (libmilter hides it from its callbacks):
the exact packets pigeon sends, ABORT before the MAIL of a new transaction,
the commands a milter negotiated away or will not answer, SKIP in the body,
the macro lists a milter asks for. The peer is a Unix socket in the test's
directory that records every packet and answers from a script; the real
milters are in tests/e2e/test_milter_*.py.
"""

from __future__ import annotations

import asyncio
import io
import struct

from pigeon.config.schema import MilterConfig
from pigeon.policy.api import SessionFacts
from pigeon.policy.milter import MilterCheck
from pigeon.proto import milter as M
from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.address import Address

BOB = Address("bob", "example.test")


class Message:
    queue_id, size, eight_bit = "QID1", 0, False

    def __init__(self, head: bytes, body: bytes) -> None:
        self._head, self._body = head, body

    def header_section(self) -> bytes:
        return self._head

    def body(self) -> io.BytesIO:
        return io.BytesIO(self._body)


async def _peer(path, negotiated: bytes, answers: dict[bytes, bytes], log: list) -> asyncio.Server:
    """A milter that answers OPTNEG with `negotiated` and command C with
    answers.get(C, b"c") (b"" = no answer), logging (command, data)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                packet = await reader.readexactly(length)
                command, data = packet[:1], packet[1:]
                log.append((command, data))
                if command == M.OPTNEG:
                    writer.write(M.encode(b"O", negotiated))
                elif command not in (M.MACRO, M.ABORT, M.QUIT):
                    answer = answers.get(command, b"c")
                    if answer:
                        writer.write(M.encode(answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            log.append((b"", b""))  # the client closed the connection
            writer.close()

    return await asyncio.start_unix_server(serve, path)


def _run(tmp_path, negotiated, answers, session):
    log: list = []
    path = str(tmp_path / "milter.sock")

    async def main():
        server = await _peer(path, negotiated, answers, log)
        config = MilterConfig("scripted", f"unix:{path}", 5.0, 2.0, 2.0, "tempfail")
        check = MilterCheck(config, "mx.test")
        facts = SessionFacts("192.0.2.1", 4000)
        try:
            return await session(check, facts)
        finally:
            check.disconnect(facts)
            for _ in range(500):  # until the peer saw the close (bounded: 5 s)
                if log and log[-1][0] == b"":
                    break
                await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), log


def _commands(log):
    return b"".join(c for c, _ in log if c != M.MACRO)  # b"" (the close) adds nothing


def _everything(protocol: int = 0, macros: bytes = b"") -> bytes:
    return struct.pack("!III", 6, M.ACTIONS_OFFERED, protocol) + macros


def test_a_transaction_given_up_is_aborted_before_the_next_mail(tmp_path):
    async def session(check, facts):
        await check.connect(facts)
        facts.helo = "client.test"
        await check.helo(facts)
        await check.mail(facts, BOB, MailParams())
        await check.rcpt(facts, BOB, RcptParams())
        # RSET: the pipeline resets; the next MAIL is a new transaction.
        return await check.mail(facts, BOB, MailParams())

    verdict, log = _run(tmp_path, _everything(), {}, session)
    assert verdict is None
    assert _commands(log) == b"OCHMRAMQ"
    assert log[-3] == (M.MAIL, b"<bob@example.test>\x00")


def test_commands_negotiated_away_or_unanswered_are_not_waited_for(tmp_path):
    quiet = M.NOHELO | M.NR_CONN | M.NR_MAIL | M.NR_RCPT | M.NR_HDR | M.NR_EOH | M.NR_BODY
    unanswered = {c: b"" for c in (M.CONNECT, M.MAIL, M.RCPT, M.HEADER, M.EOH, M.BODY)}

    async def session(check, facts):
        for step in (
            check.connect(facts),
            check.helo(facts),
            check.mail(facts, BOB, MailParams()),
            check.rcpt(facts, BOB, RcptParams()),
            check.data(facts),
        ):
            assert await step is None  # no wait: a wait would time out (tempfail)
        message = Message(b"From: a@example.test\r\nSubject: x\r\n", b"body\r\n")
        return await check.end_of_data(facts, message)

    verdict, log = _run(tmp_path, _everything(quiet), unanswered, session)
    assert verdict is None
    assert _commands(log) == b"OCMRTLLNBEQ"  # no HELO


def test_skip_ends_the_body(tmp_path):
    async def session(check, facts):
        await check.connect(facts)
        await check.mail(facts, BOB, MailParams())
        message = Message(b"Subject: x\r\n", b"x" * (M.CHUNK * 3))
        return await check.end_of_data(facts, message)

    verdict, log = _run(tmp_path, _everything(M.SKIP), {M.BODY: b"s"}, session)
    assert verdict is None
    assert _commands(log) == b"OCMLNBEQ"  # one BODY of three, then the end


def test_the_macros_a_milter_asks_for(tmp_path):
    wanted = struct.pack("!I", 2) + b"{auth_authen} {client_addr} i\x00"

    async def session(check, facts):
        await check.connect(facts)
        facts.user = "alice@example.test"
        return await check.mail(facts, BOB, MailParams(size=10))

    _, log = _run(tmp_path, _everything(0, wanted), {}, session)
    macros = [data for command, data in log if command == M.MACRO]
    assert macros[0].startswith(b"Cj\x00mx.test\x00{daemon_name}\x00smtp\x00")  # the default set
    assert macros[1] == b"M{auth_authen}\x00alice@example.test\x00{client_addr}\x00192.0.2.1\x00"
    assert log[-3] == (M.MAIL, b"<bob@example.test>\x00SIZE=10\x00")


def test_a_milter_asking_for_more_than_offered_fails(tmp_path):
    async def session(check, facts):
        return await check.connect(facts)

    verdict, log = _run(tmp_path, struct.pack("!III", 6, 0x200, 0), {}, session)
    assert verdict is not None and verdict.reply.code == 451
    assert _commands(log) == b"O"
