"""The IMAP driver and its handlers in memory: the real connection, session, login rules and
mail store, over `pigeon.testing.memstream` (fake clock, handshake on demand)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import pytest

from pigeon.auth.accounts import AccountStore
from pigeon.config.imap import ImapConfig
from pigeon.mailstore import notify
from pigeon.mailstore.mailbox import MailStore
from pigeon.proto.events import TlsInfo
from pigeon.readers.imap.connection import ImapConnection
from pigeon.readers.imap_service import ImapService, ImapSettings
from pigeon.readers.login import ReaderLogins
from pigeon.testing.loginkit import LoginWorld
from pigeon.testing.memstream import MemoryStream

TLS = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
USER = "alice@example.test"
PASSWORD = "secret"


@pytest.fixture(scope="module")
def accounts_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("accounts")
    with AccountStore.in_data_dir(path).open() as accounts:
        accounts.add(USER, PASSWORD)
        accounts.add("operator", PASSWORD)  # not an address: no mailbox
    return path


@dataclass
class _Tls:
    context: object = None  # the memory stream ignores it


class Client:
    """One client connection to the real driver, over a memory stream."""

    def __init__(self, service: ImapService, role: str = "imap") -> None:
        self.stream = MemoryStream(TLS)
        self.conn = ImapConnection(
            self.stream,
            service,
            service.settings,
            role,
            ("127.0.0.1", 40000),
            clock=self.stream.clock,
        )
        self.task = asyncio.get_running_loop().create_task(self.conn.run())
        self.task.add_done_callback(lambda _: self.stream.finished())
        self.seen = 0

    async def output(self) -> bytes:
        await self.stream.settled()
        while self.stream.handshake_pending:
            self.stream.handshake()
            await self.stream.settled()
        out = bytes(self.stream.output[self.seen :])
        self.seen = len(self.stream.output)
        return out

    async def say(self, data: bytes) -> bytes:
        self.stream.send(data)
        return await self.output()

    async def login(self) -> None:
        await self.output()
        if self.conn.role == "imap":
            assert b"a OK" in await self.say(b"a STARTTLS\r\n")
        out = await self.say(f'l LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        assert b"l OK" in out, out


def make_service(world: LoginWorld, root, **imap) -> ImapService:
    settings = ImapSettings(
        ImapConfig(**imap), "imap.test", _Tls(), 5.0, 5.0, ("PLAIN", "SCRAM-SHA-256")
    )
    logins = ReaderLogins(
        world.service, world.maillog, protocol="imap", clock=world.clock, sleep=world.sleep
    )
    return ImapService(settings, logins=logins, store=MailStore(root))


@pytest.fixture
def world(accounts_dir, tmp_path):
    w = LoginWorld(accounts_dir, tmp_path)
    yield w
    w.close()


def run(world, tmp_path, scenario, **imap):
    async def main():
        service = make_service(world, tmp_path / "mailboxes", **imap)
        await scenario(service)

    asyncio.run(main())


MESSAGE = b"From: a@b.example\r\nTo: alice@example.test\r\nSubject: %s\r\n\r\nHello.\r\n"


def appended_ok(out: bytes) -> None:
    assert b"APPENDUID" in out, out


# --- connection, TLS, login ------------------------------------------------------------


def test_no_password_before_starttls_and_pipelined_plaintext_is_dropped(world, tmp_path):
    async def scenario(service):
        c = Client(service)
        greeting = await c.output()
        assert greeting.startswith(b"* OK [CAPABILITY ") and b"LOGINDISABLED" in greeting
        assert b"AUTH=" not in greeting and b"STARTTLS" in greeting
        out = await c.say(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        assert out.startswith(b"a NO [PRIVACYREQUIRED]"), out
        out = await c.say(b"b AUTHENTICATE PLAIN\r\n")
        assert out.startswith(b"b NO [PRIVACYREQUIRED]"), out
        # CVE-2011-0411: the LOGIN sent with STARTTLS is never read.
        out = await c.say(f'c STARTTLS\r\nd LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        assert out.startswith(b"c OK") and b"d " not in out, out
        out = await c.say(b"e CAPABILITY\r\n")
        assert b"AUTH=PLAIN" in out and b"LOGINDISABLED" not in out and b"SASL-IR" in out
        out = await c.say(f'f LOGIN {USER} "{PASSWORD}"\r\n'.encode())
        assert out.startswith(b"f OK [CAPABILITY ") and b"UIDPLUS" in out, out
        await c.say(b"g LOGOUT\r\n")
        assert c.stream.closed

    run(world, tmp_path, scenario)


def test_wrong_password_and_account_without_mailbox(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.output()
        out = await c.say(f'a LOGIN {USER} "nope"\r\n'.encode())
        assert out.startswith(b"a NO [AUTHENTICATIONFAILED]"), out
        out = await c.say(f'b LOGIN operator "{PASSWORD}"\r\n'.encode())
        assert out.startswith(b"b NO [AUTHORIZATIONFAILED]"), out

    run(world, tmp_path, scenario)


def test_authenticate_plain_with_and_without_initial_response(world, tmp_path):
    import base64

    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())

    async def scenario(service):
        c = Client(service, "imaps")
        await c.output()
        out = await c.say(b"a AUTHENTICATE PLAIN\r\n")
        assert out == b"+ \r\n", out
        out = await c.say(token + b"\r\n")
        assert out.startswith(b"a OK"), out
        d = Client(service, "imaps")
        await d.output()
        out = await d.say(b"b AUTHENTICATE PLAIN " + token + b"\r\n")
        assert out.startswith(b"b OK"), out
        e = Client(service, "imaps")
        await e.output()
        await e.say(b"c AUTHENTICATE PLAIN\r\n")
        out = await e.say(b"*\r\n")
        assert out.startswith(b"c BAD"), out

    run(world, tmp_path, scenario)


def test_unknown_wrong_state_garbage_and_oversized_literals(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.output()
        assert (await c.say(b"a FROB\r\n")).startswith(b"a BAD")
        assert (await c.say(b"b SELECT INBOX\r\n")).startswith(b"b BAD")
        assert b"BAD" in await c.say(b"\xff\xfe\x00garbage\r\n")
        await c.login()
        out = await c.say(b"c APPEND INBOX {2048}\r\n")
        assert out.startswith(b"c NO [TOOBIG]"), out
        assert (await c.say(b"d NOOP\r\n")).startswith(b"d OK")
        out = await c.say(b"e APPEND INBOX {4096+}\r\n")
        assert b"[TOOBIG]" in out and b"* BYE" in out, out
        assert c.stream.closed

    run(world, tmp_path, scenario, max_literal=1024)


def test_silent_clients_are_logged_out(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.output()
        c.stream.advance(61)
        out = await c.output()
        assert out.startswith(b"* BYE"), out
        assert c.stream.closed
        d = Client(service, "imaps")
        await d.login()
        d.stream.advance(120)  # under autologout
        assert await d.output() == b""
        d.stream.advance(1800)
        assert (await d.output()).startswith(b"* BYE")

    run(world, tmp_path, scenario, login_timeout=60.0, autologout=1800.0)


def test_the_stop_says_bye(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        c.conn.shutdown()
        out = await c.output()
        assert out.startswith(b"* BYE"), out
        assert c.stream.closed

    run(world, tmp_path, scenario)


# --- mailboxes and messages -------------------------------------------------------------


def test_append_select_fetch_store_expunge_in_one_session(world, tmp_path):
    async def appended(service):
        c = Client(service, "imaps")
        await c.login()
        for n in range(3):
            msg = MESSAGE % b"note %d" % n
            out = await c.say(b"a APPEND INBOX (\\Flagged) {%d}\r\n" % len(msg))
            assert out.startswith(b"+ "), out
            appended_ok(await c.say(msg + b"\r\n"))
        out = await c.say(b"s SELECT INBOX\r\n")
        assert b"* 3 EXISTS" in out and b"[UIDVALIDITY " in out and b"[READ-WRITE]" in out, out
        assert b"[HIGHESTMODSEQ " in out and b"[PERMANENTFLAGS (" in out
        out = await c.say(b"f FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n")
        assert out.count(b" FETCH (") == 3 and b"\\Flagged" in out, out
        out = await c.say(b"g FETCH 2 (BODY[HEADER.FIELDS (SUBJECT)])\r\n")
        assert b"Subject: note 1" in out and b"\\Seen" in out, out
        out = await c.say(b"h FETCH 9 FLAGS\r\n")
        assert out.startswith(b"h BAD"), out
        out = await c.say(b"i STORE 1 +FLAGS (\\Deleted)\r\n")
        assert b"\\Deleted" in out and b"i OK" in out
        out = await c.say(b"j EXPUNGE\r\n")
        assert out.startswith(b"* 1 EXPUNGE\r\n") and b"j OK" in out, out
        out = await c.say(b"k UID FETCH 1:* (FLAGS)\r\n")
        assert out.count(b" FETCH (") == 2 and b"UID " in out, out

    run(world, tmp_path, appended)


def test_two_sessions_see_each_others_changes(world, tmp_path):
    async def scenario(service):
        a, b = Client(service, "imaps"), Client(service, "imaps")
        await a.login()
        await b.login()
        for n in range(2):
            msg = MESSAGE % b"m%d" % n
            await a.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await a.say(b"s SELECT INBOX\r\n")
        await b.say(b"s SELECT INBOX\r\n")
        await a.say(b"t STORE 1 +FLAGS (\\Flagged \\Deleted)\r\n")
        out = await b.say(b"n NOOP\r\n")
        assert re.search(rb"\* 1 FETCH \(FLAGS \([^)]*\\Flagged", out), out
        assert out.index(b"FETCH") < out.index(b"n OK")  # the updates come first
        await a.say(b"e EXPUNGE\r\n")
        out = await b.say(b"n FETCH 1:* FLAGS\r\n")
        assert b"EXPUNGE" not in out  # never during FETCH (RFC 9051 §7.5.1)
        out = await b.say(b"n NOOP\r\n")
        assert b"* 1 EXPUNGE" in out, out

    run(world, tmp_path, scenario)


def test_idle_is_woken_by_an_announced_delivery(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        await c.say(b"s SELECT INBOX\r\n")
        out = await c.say(b"i IDLE\r\n")
        assert out.startswith(b"+ "), out
        # Deliver as local delivery does: a file into new/, then the announcement.
        maildir = tmp_path / "mailboxes" / "example.test" / "alice"
        (maildir / "new" / "1700000000.M1P1.host,S=20").write_bytes(b"Subject: hi\n\nhello\n")
        await asyncio.to_thread(notify.announce, maildir)
        await asyncio.sleep(0)
        out = await c.output()
        assert b"* 1 EXISTS" in out, out
        out = await c.say(b"DONE\r\n")
        assert out.startswith(b"i OK"), out

    run(world, tmp_path, scenario)


def test_copy_move_and_folders(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        msg = MESSAGE % b"moving"
        await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        assert (await c.say(b"c CREATE Archive/2024\r\n")).startswith(b"c OK")
        assert b"[ALREADYEXISTS]" in await c.say(b"c CREATE Archive/2024\r\n")
        out = await c.say(b'l LIST "" "*"\r\n')
        assert b'"Archive/2024"' in out and b"\\Sent" in out and b"\\HasChildren" in out, out
        await c.say(b"s SELECT INBOX\r\n")
        out = await c.say(b"m UID COPY 1 Archive/2024\r\n")
        assert b"[COPYUID " in out, out
        out = await c.say(b"m MOVE 2 Archive/2024\r\n")
        assert b"* OK [COPYUID " in out and b"* 2 EXPUNGE" in out and b"m OK" in out, out
        out = await c.say(b"m MOVE 1 Nowhere\r\n")
        assert b"[TRYCREATE]" in out, out
        out = await c.say(b'st STATUS "Archive/2024" (MESSAGES UIDNEXT UNSEEN)\r\n')
        assert b"MESSAGES 2" in out, out

    run(world, tmp_path, scenario)


def test_idle_polls_for_mail_other_programs_write(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        await c.say(b"s SELECT INBOX\r\n")
        assert (await c.say(b"i IDLE\r\n")).startswith(b"+ ")
        maildir = tmp_path / "mailboxes" / "example.test" / "alice"
        (maildir / "new" / "1700000000.M2P2.other,S=20").write_bytes(b"Subject: hi\n\nhello\n")
        c.stream.advance(4)
        assert await c.output() == b""  # not yet: the poll is every 5 s
        c.stream.advance(1)
        assert b"* 1 EXISTS" in await c.output()
        c.stream.advance(1800)
        assert (await c.output()).startswith(b"* BYE")  # idle_timeout

    run(world, tmp_path, scenario, idle_poll=5.0, idle_timeout=1800.0)


def test_bodystructure_is_computed_once_per_message_and_the_cache_is_bounded(world, tmp_path):
    from pigeon.readers.imap.bodycache import BodyCache

    async def scenario(service):
        a, b = Client(service, "imaps"), Client(service, "imaps")
        await a.login()
        await b.login()
        msg = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x--\r\n"
        await a.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await a.say(b"s SELECT INBOX\r\n")
        await b.say(b"s SELECT INBOX\r\n")
        out = await a.say(b"f FETCH 1 (BODYSTRUCTURE ENVELOPE)\r\n")
        assert b'"MIXED"' in out.upper() and b"ENVELOPE (" in out, out
        again = await b.say(b"f FETCH 1 (BODYSTRUCTURE ENVELOPE)\r\n")
        assert again.split(b"\r\n")[0] == out.split(b"\r\n")[0]
        assert (service.bodies.misses, service.bodies.hits) == (1, 1)  # parsed once, two sessions

    run(world, tmp_path, scenario)
    cache = BodyCache(limit=100)
    for n in range(10):
        cache.put(n, "value", 30)
    assert (
        cache.used <= 100 and len(cache) == 3 and cache.get(0) is None and cache.get(9) == "value"
    )


def test_authenticate_scram_sha_256_sends_the_server_signature_before_ok(world, tmp_path):
    import base64

    from pigeon.proto import scram

    async def scenario(service):
        c = Client(service, "imaps")
        await c.output()
        first_bare = b"n=" + USER.encode() + b",r=clientnonce"
        out = await c.say(
            b"a AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(b"n,," + first_bare) + b"\r\n"
        )
        assert out.startswith(b"+ "), out
        server_first = base64.b64decode(out[2:].strip())
        attrs = dict(item.split(b"=", 1) for item in server_first.split(b","))
        without_proof = b"c=biws,r=" + attrs[b"r"]
        auth_message = first_bare + b"," + server_first + b"," + without_proof
        proof = scram.client_proof(
            PASSWORD, base64.b64decode(attrs[b"s"]), int(attrs[b"i"]), auth_message
        )
        final = without_proof + b",p=" + base64.b64encode(proof)
        out = await c.say(base64.b64encode(final) + b"\r\n")
        assert out.startswith(b"+ "), out  # v=<server signature>, then an empty answer
        assert base64.b64decode(out[2:].strip()).startswith(b"v=")
        out = await c.say(b"\r\n")
        assert out.startswith(b"a OK"), out
        assert (await c.say(b"s SELECT INBOX\r\n")).endswith(
            b"s OK [READ-WRITE] SELECT completed\r\n"
        )

    run(world, tmp_path, scenario)


def test_sections_partials_missing_parts_and_binary(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        msg = (
            b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
            b"--x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
            b"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-weird\r\n\r\nzz\r\n"
            b"--x--\r\n"
        )
        await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await c.say(b"s EXAMINE INBOX\r\n")
        out = await c.say(b"f FETCH 1 (BODY[1] BODY[1.MIME] BODY[TEXT]<0.4> BODY[9]<0.10>)\r\n")
        assert b"BODY[1] {10}\r\nfirst part BODY[1.MIME]" in out, out  # RFC 2046 §5.1.1
        assert b"BODY[1.MIME] {" in out and b"BODY[TEXT]<0> {4}\r\n--x\r" in out, out
        assert b"BODY[9]<0> NIL" in out and out.endswith(b"f OK FETCH completed\r\n"), out
        out = await c.say(b"g FETCH 1 (BINARY[2] BINARY.SIZE[2])\r\n")
        assert b"BINARY[2] ~{3}\r\n\x00\x01\x02" in out and b"BINARY.SIZE[2] 3" in out, out
        out = await c.say(b"h FETCH 1 (BINARY[3])\r\n")
        assert out.startswith(b"h NO [UNKNOWN-CTE]"), out
        out = await c.say(b"i FETCH 1 (FLAGS)\r\n")
        assert b"\\Seen" not in out  # EXAMINE: no \\Seen from BODY[]

    run(world, tmp_path, scenario)


def test_literals_that_lie_about_their_size(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        # Longer than announced: the rest is read as the end of the command line.
        assert (await c.say(b"a APPEND INBOX {5}\r\n")).startswith(b"+ ")
        out = await c.say(b"12345 EXTRA STUFF\r\n")
        assert out.startswith(b"a BAD"), out
        assert (await c.say(b"b NOOP\r\n")).startswith(b"b OK")
        # Shorter than announced: the session waits for the rest, then the
        # auto-logout ends it; nothing was stored.
        assert (await c.say(b"c APPEND INBOX {100}\r\n")).startswith(b"+ ")
        assert await c.say(b"only a few octets") == b""
        c.stream.advance(1800)
        assert (await c.output()).startswith(b"* BYE")
        assert c.stream.closed
        d = Client(service, "imaps")
        await d.login()
        assert b"* 0 EXISTS" in await d.say(b"s SELECT INBOX\r\n")

    run(world, tmp_path, scenario)


def test_list_patterns_subscriptions_status_rename_delete(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        for name in (b"Archive/2024", b"Archive/2025", b"Projects"):
            assert (await c.say(b"c CREATE " + name + b"\r\n")).startswith(b"c OK")
        out = await c.say(b'l LIST "" "%"\r\n')
        assert b'"Archive"' in out and b"\\HasChildren" in out and b"Archive/2024" not in out, out
        assert b'"INBOX"' in out and b"\\Trash" in out, out
        out = await c.say(b'l LIST "Archive/" "%"\r\n')
        assert out.count(b"* LIST") == 2 and b'"Archive/2025"' in out, out
        out = await c.say(b'l LIST "" ""\r\n')
        assert out.startswith(b'* LIST (\\Noselect) "/" ""'), out
        assert (await c.say(b"u SUBSCRIBE Projects\r\n")).startswith(b"u OK")
        out = await c.say(b'l LIST (SUBSCRIBED) "" "*"\r\n')
        assert b'"Projects"' in out and b"\\Subscribed" in out and b"Archive" not in out, out
        out = await c.say(b'l LSUB "" "*"\r\n')
        assert b"* LSUB (" in out and b'"Projects"' in out, out
        out = await c.say(b'l LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))\r\n')
        assert b'* STATUS "Projects" (MESSAGES 0 UIDNEXT 1)' in out, out
        out = await c.say(b"r RENAME Projects Done\r\n")
        assert out.startswith(b"r OK"), out
        out = await c.say(b"st STATUS Projects (MESSAGES)\r\n")
        assert out.startswith(b"st NO [NONEXISTENT]"), out
        assert (await c.say(b"d DELETE Done\r\n")).startswith(b"d OK")
        assert b"NO [NONEXISTENT]" in await c.say(b"d DELETE Done\r\n")
        assert b"NO" in await c.say(b"d DELETE INBOX\r\n")
        out = await c.say(b"n NAMESPACE\r\n")
        assert out.startswith(b'* NAMESPACE (("" "/")) NIL NIL'), out
        out = await c.say(b'i ID ("name" "test")\r\n')
        assert out.startswith(b'* ID ("name" "pigeon")'), out

    run(world, tmp_path, scenario)


def test_condstore_esearch_and_imap4rev2(world, tmp_path):
    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        for n in range(3):
            msg = MESSAGE % b"cs %d" % n
            await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        out = await c.say(b"e ENABLE CONDSTORE\r\n")
        assert out.startswith(b"* ENABLED CONDSTORE"), out
        out = await c.say(b"s SELECT INBOX (CONDSTORE)\r\n")
        highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", out).group(1))
        out = await c.say(b"t STORE 1 +FLAGS (\\Flagged)\r\n")
        assert b"MODSEQ (" in out, out
        out = await c.say(b"f FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % highest)
        assert out.count(b" FETCH (") == 1 and b"MODSEQ" in out, out
        out = await c.say(b"u STORE 2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)\r\n")
        assert b"u OK [MODIFIED 2]" in out, out
        out = await c.say(b"q SEARCH RETURN (MIN MAX COUNT) ALL\r\n")
        assert out.startswith(b'* ESEARCH (TAG "q") MIN 1 MAX 3 COUNT 3'), out
        out = await c.say(b"q SEARCH CHARSET KOI8-R ALL\r\n")
        assert out.startswith(b"q NO [BADCHARSET"), out
        out = await c.say(b"q UID SEARCH FLAGGED\r\n")
        assert out.startswith(b"* SEARCH 1\r\n"), out
        d = Client(service, "imaps")
        await d.login()
        out = await d.say(b"e ENABLE IMAP4rev2\r\n")
        assert out.startswith(b"* ENABLED IMAP4rev2"), out
        out = await d.say(b"s SELECT INBOX\r\n")
        assert b"RECENT" not in out, out
        out = await d.say(b"q SEARCH UNSEEN\r\n")
        assert out.startswith(b'* ESEARCH (TAG "q") ALL 1:3'), out  # 2 kept unseen: MODIFIED

    run(world, tmp_path, scenario)
