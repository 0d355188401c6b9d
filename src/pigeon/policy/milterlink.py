"""One connection to one milter: the bytes of pigeon.proto.milter over a socket.

Contract:
  * `MilterLink.open(config)` connects to the milter's socket ("inet:" or
    "unix:", `pigeon.config.schema.MilterConfig`) and negotiates the
    options (version 6, every action offered), all within
    `connect_timeout`; it returns the link with `negotiated` set.
  * `send(*packets)` writes packets (no wait: the socket's buffer takes
    them; a command's answer is awaited by `answer()`, which is bounded).
  * `answer(timeout)` reads until the response that ends the command (an
    `Answer` other than "progress") and returns it with the modifications
    that came before it (only the end of the message has any). Each wait
    is bounded by `timeout`; a "progress" response starts it again
    (libmilter's smfi_progress: "still working").
  * Every failure is `MilterFailure` (the socket closed, refused or timed
    out, a protocol error) with a short reason for the log; the caller
    applies the milter's default action. `close()` never raises and never
    waits.
"""

from __future__ import annotations

import asyncio

from pigeon.config.schema import MilterConfig
from pigeon.proto import milter as M

__all__ = ["MilterFailure", "MilterLink"]

_READ = 65536


class MilterFailure(Exception):
    """The milter cannot be used for this connection (module contract)."""


class MilterLink:
    """A negotiated connection to one milter (module contract)."""

    __slots__ = ("name", "negotiated", "_reader", "_writer", "_decoder", "_pending")

    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.name = name
        self.negotiated = M.Negotiated(0, 0, 0)
        self._reader = reader
        self._writer = writer
        self._decoder = M.MilterDecoder()
        self._pending: list[M.Response] = []

    @classmethod
    async def open(cls, config: MilterConfig) -> MilterLink:
        try:
            return await asyncio.wait_for(cls._open(config), config.connect_timeout)
        except TimeoutError:
            raise MilterFailure(f"no connection within {config.connect_timeout:g}s") from None
        except (OSError, EOFError, M.MilterProtocolError) as exc:
            raise MilterFailure(f"cannot connect: {exc}") from None

    @classmethod
    async def _open(cls, config: MilterConfig) -> MilterLink:
        address = config.address
        if isinstance(address, str):
            reader, writer = await asyncio.open_unix_connection(address, limit=_READ)
        else:
            reader, writer = await asyncio.open_connection(*address, limit=_READ)
        link = cls(config.name, reader, writer)
        try:
            link.send(M.encode_negotiate())
            response = await link._next()
            if not isinstance(response, M.Negotiated):
                raise M.MilterProtocolError(f"answered the negotiation with {response!r}")
            if response.version < 2 or response.actions & ~M.ACTIONS_OFFERED:
                raise M.MilterProtocolError(
                    f"asked for version {response.version}, actions {response.actions:#x}"
                )
            if response.protocol & ~M.PROTOCOL_OFFERED:
                raise M.MilterProtocolError(f"asked for protocol steps {response.protocol:#x}")
            link.negotiated = response
        except BaseException:
            link.close()
            raise
        return link

    def send(self, *packets: bytes) -> None:
        try:
            self._writer.writelines(packets)
        except (OSError, RuntimeError) as exc:  # RuntimeError: transport closed
            raise MilterFailure(f"cannot write: {exc}") from None

    async def answer(self, timeout: float) -> tuple[list[M.Modification], M.Answer]:
        changes: list[M.Modification] = []
        while True:
            try:
                response = await asyncio.wait_for(self._next(), timeout)
            except TimeoutError:
                raise MilterFailure(f"no answer within {timeout:g}s") from None
            except (OSError, EOFError) as exc:
                raise MilterFailure(f"connection lost: {exc or 'closed'}") from None
            except M.MilterProtocolError as exc:
                raise MilterFailure(f"protocol error: {exc}") from None
            if isinstance(response, M.Modification):
                changes.append(response)
            elif isinstance(response, M.Answer) and response.kind != "progress":
                return changes, response
            elif isinstance(response, M.Negotiated):
                raise MilterFailure("protocol error: a negotiation out of turn")

    async def drain(self, timeout: float) -> None:
        """Wait until the socket took what was sent (a big body), bounded."""
        try:
            await asyncio.wait_for(self._writer.drain(), timeout)
        except TimeoutError:
            raise MilterFailure(f"did not read the message within {timeout:g}s") from None
        except OSError as exc:
            raise MilterFailure(f"connection lost: {exc}") from None

    async def _next(self) -> M.Response:
        while not self._pending:
            data = await self._reader.read(_READ)
            if not data:
                raise EOFError("closed by the milter")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def close(self, quit_first: bool = False) -> None:
        try:
            if quit_first:
                self._writer.write(M.encode(M.QUIT))
            self._writer.close()
        except Exception:  # closing is best effort: the milter sees EOF either way
            pass
