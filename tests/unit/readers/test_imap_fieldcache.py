"""FETCH ENVELOPE and SEARCH HEADER answered from the folder's `pigeon-cache`
(pigeon.readers.imap.fields): the same answers as from the files, through flag changes,
expunges, appends, renames by another program, and a lost or damaged cache."""

from __future__ import annotations

import os
import re

from test_imap_session import Client, accounts_dir, run, world  # noqa: F401 (fixtures)

from pigeon.mailstore.fieldcache import FILENAME
from pigeon.mailstore.mailbox import MailStore
from pigeon.mailstore.state import forget_state
from pigeon.proto.imap import fetchrender
from pigeon.proto.imap import response as R
from pigeon.proto.imap.fetchspec import FetchAtt

MESSAGES = [
    b"From: Zed <z@b.example>\r\nTo: alice@example.test\r\nSubject: a zebra here\r\n"
    b"Date: Sun, 6 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@b.example>\r\n\r\nHello.\r\n",
    b"From: a@b.example\r\nSubject: =?utf-8?q?Z=C3=A9bra_zebra?=\r\nX-Other: zebra\r\n\r\nzebra\r\n",
    b"From: a@b.example\r\nSubject: long\r\n and folded\r\nCc: c@d.example, e@f.example\r\n\r\nx\r\n",
    b"From: a@b.example\r\nSubject: caf\xc3\xa9 ZEBRA\r\n\r\nx\r\n",
    b"Subject: nothing\r\nno colon line\r\nTo: alice@example.test\r\n\r\nbody zebra\r\n",
]


def same_envelopes(out: bytes, maildir: str) -> bool:
    """Every FETCH line carries the ENVELOPE its file gives, in order."""
    wanted = expected(maildir)
    at = 0
    for env in wanted:
        at = out.find(b" ENVELOPE " + env + b")\r\n", at)
        if at < 0:
            return False
    return out.count(b" FETCH (") == len(wanted)


def expected(maildir: str) -> list[bytes]:
    """Each message's ENVELOPE computed from its file, as without a cache."""
    cur = os.path.join(maildir, "cur")
    out = {}
    for name in os.listdir(cur):
        with open(os.path.join(cur, name), "rb") as f:
            data = f.read().replace(b"\n", b"\r\n")
        _, value = fetchrender.content_item(FetchAtt("ENVELOPE"), data, None)
        out[name.partition(",")[0]] = R.encode(value)
    return [out[k] for k in sorted(out, key=lambda k: tuple(map(int, re.findall(r"\d+", k))))]


def test_envelopes_and_header_search_are_the_same_with_and_without_the_cache(
    world,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    maildir = MailStore(tmp_path / "mailboxes").user("alice", "example.test").maildir
    cache = os.path.join(maildir, FILENAME)

    async def answers(c: Client) -> tuple[bytes, bytes, bytes]:
        fetched = await c.say(b"f FETCH 1:* (FLAGS ENVELOPE)\r\n")
        found = await c.say(b"s SEARCH HEADER Subject zebra\r\n")
        # a TEXT key makes the search read the files: the reference
        reference = await c.say(b"r SEARCH OR HEADER Subject zebra BODY no-such-word\r\n")
        assert b"f OK" in fetched and b"s OK" in found and b"r OK" in reference
        assert found.split(b"\r\n")[0] == reference.split(b"\r\n")[0], (found, reference)
        return fetched, found, reference

    async def scenario(service):
        c = Client(service, "imaps")
        await c.login()
        for msg in MESSAGES:
            await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await c.say(b"s SELECT INBOX\r\n")
        fetched, found, _ = await answers(c)  # fills the cache
        assert os.path.getsize(cache) > 100
        assert same_envelopes(fetched, maildir)
        assert found.startswith(b"* SEARCH 1 2 4\r\n"), found
        again, found_again, _ = await answers(c)  # from the cache
        assert (again, found_again) == (fetched, found)

        # flags changed here and by another program (a rename), an expunge, an append
        await c.say(b"t STORE 1 +FLAGS (\\Flagged \\Deleted)\r\n")
        cur = os.path.join(maildir, "cur")
        name = next(n for n in sorted(os.listdir(cur)) if ":2," in n and "F" not in n)
        os.rename(os.path.join(cur, name), os.path.join(cur, name + "S"))
        await c.say(b"e EXPUNGE\r\n")
        msg = b"Subject: zebra again\r\nFrom: n@b.example\r\n\r\nnew\r\n"
        await c.say(b"x APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        await c.say(b"n NOOP\r\n")
        fetched, found, _ = await answers(c)
        assert same_envelopes(fetched, maildir) and fetched.count(b" FETCH (") == 5
        assert found.startswith(b"* SEARCH 1 3 5\r\n"), found

        # a damaged cache, then a lost one, as a new process finds them
        for damage in (b"pigeon-cache 1\n+junk\n", None):
            if damage is None:
                os.unlink(cache)
            else:
                with open(cache, "wb") as f:
                    f.write(damage)
            await c.say(b"c CLOSE\r\n")
            forget_state(maildir)
            await c.say(b"s SELECT INBOX\r\n")
            now = await answers(c)
            assert now[:2] == (fetched, found)
            assert os.path.getsize(cache) > 100  # rebuilt

    run(world, tmp_path, scenario)
