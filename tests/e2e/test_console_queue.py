"""The console's dashboard, queue and activity pages against a running pigeon.

A real pigeon on its own ports and data directory, an admin made with the
console's own store, and a browser's part played by urllib with a cookie
jar: every change is a POST of the page's own form with the CSRF token
read from the page. Mail for "down.test" goes to a closed loopback port,
so it stays deferred; mail for alice@example.test is delivered locally;
nobody@example.test is refused at RCPT.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import smtplib
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pigeon.console.admins import AdminStore
from pigeon.testing.live import free_port, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
N = 3


class Browser:
    """GET and POST with cookies, following redirects, as a browser would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=20) as r:
            return r.status, r.read().decode()

    def post(self, path: str, fields: list[tuple[str, str]]) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.base + path, data=data, timeout=20) as r:
            return r.status, r.geturl(), r.read().decode()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


@pytest.fixture
def server(pigeon_factory, tmp_path):
    port = free_port()  # nothing listens here: mail for down.test stays deferred
    proc = pigeon_factory(
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."example.test"]\nmailboxes = ["alice"]\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        '[delivery]\nconnect_timeout = 2.0\n[admin]\nmetrics_listen = ""\n'
        f'[log]\nfile = "{tmp_path / "mail.log"}"\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'
    )
    AdminStore.in_data_dir(proc.data_dir).add("admin", PASSWORD)
    return proc


def logged_in(server) -> Browser:
    browser = Browser(server.api_url())
    status, url, html = browser.post(
        "/login", [("name", "admin"), ("password", PASSWORD), ("next", "/")]
    )
    assert status == 200 and url.endswith("/") and "Dashboard" in html
    return browser


def send(server, recipients: list[str], subject: str = "hello") -> dict:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as smtp:
        return smtp.sendmail(
            "sender@origin.test",
            recipients,
            f"From: sender@origin.test\r\nSubject: {subject}\r\n\r\nbody\r\n",
        )


def rows(html: str) -> list[str]:
    return re.findall(r'data-test="queue-row" data-id="([0-9A-Z]+)" data-state="([a-z]+)"', html)


def test_deferred_mail_is_found_held_released_and_deleted_through_the_forms(server):
    browser = logged_in(server)
    send(server, ["carol@down.test"], "to the closed port")
    send(server, ["dave@down.test"], "another")  # not the one searched for

    def deferred():
        return [r for r in rows(browser.get("/queue?recipient=carol")[1]) if r[1] == "deferred"]

    found = wait_for(deferred, timeout=30)
    assert len(found) == 1
    qid = found[0][0]

    # its mail-log history: the reception, then the deferral with its reason;
    # the log's own thread writes the lines (obs/logsetup.py), so the queue
    # can say "deferred" a moment before the line is there to read
    deferral = qid + r": to=&lt;carol@down\.test&gt;.*status=deferred"

    def page_with_the_deferral():
        status, html = browser.get(f"/queue/{qid}")
        return (status, html) if re.search(deferral, html) else None

    got = wait_for(page_with_the_deferral, timeout=30)
    assert got is not None, "the deferral never reached the message's mail-log history"
    status, html = got
    assert status == 200 and "carol@down.test" in html and "Subject: to the closed port" in html
    assert re.search(qid + r": client=.*from=&lt;sender@origin\.test&gt;.*\(queued\)", html)
    csrf = csrf_of(html)

    status, url, html = browser.post(f"/queue/{qid}/act", [("csrf", csrf), ("action", "hold")])
    assert url.endswith(f"/queue/{qid}") and "hold: 1 done" in html
    assert 'id="entry-state">hold<' in html
    assert [qid] == [i for i, s in rows(browser.get("/queue?state=hold")[1])]

    # Bulk: release the ticked rows from the list page.
    listing = browser.get("/queue?state=hold")[1]
    fields = [("csrf", csrf_of(listing)), ("action", "release"), ("ids", qid)]
    status, url, html = browser.post("/queue/bulk", [*fields, ("back", "/queue?state=hold")])
    assert "release: 1 done" in html and rows(html) == []
    assert browser.get(f"/queue/{qid}")[1].count('id="entry-state">hold<') == 0

    # Delete without the box: nothing happens.
    status, url, html = browser.post(f"/queue/{qid}/act", [("csrf", csrf), ("action", "delete")])
    assert "tick the box to confirm" in html and url.endswith(f"/queue/{qid}")
    status, url, html = browser.post(
        f"/queue/{qid}/act", [("csrf", csrf), ("action", "delete"), ("confirm", "yes")]
    )
    assert url.endswith("/queue") and "delete: 1 done" in html
    assert qid not in [i for i, _ in rows(html)]
    with pytest.raises(urllib.error.HTTPError) as gone:
        browser.get(f"/queue/{qid}")
    assert gone.value.code == 404

    # Bounce, from the list, ticked and confirmed: the message leaves the queue
    # (its notice to sender@origin.test is a new message).
    send(server, ["frank@down.test"], "to bounce")
    bounced = wait_for(  # deferred: not in flight, so the manager acts at once
        lambda: rows(browser.get("/queue?recipient=frank&state=deferred")[1]), timeout=30
    )
    fields = [("csrf", csrf), ("action", "bounce"), ("ids", bounced[0][0]), ("confirm", "yes")]
    status, url, html = browser.post("/queue/bulk", [*fields, ("back", "/queue?recipient=frank")])
    assert "bounce: 1 done" in html and rows(html) == []

    # A form without the token changes nothing.
    with pytest.raises(urllib.error.HTTPError) as refused:
        browser.post("/queue/flush", [("domain", "down.test")])
    assert refused.value.code == 403
    status, url, html = browser.post("/queue/flush", [("csrf", csrf), ("domain", "down.test")])
    assert "flush of mail to down.test" in html


def test_dashboard_and_stats_move_after_mail_and_activity_lists_it(server, tmp_path):
    browser = logged_in(server)
    before = json.loads(browser.get("/console/stats.json")[1])
    for i in range(N):
        send(server, ["alice@example.test"], f"local {i}")
    send(server, ["erin@down.test"], "deferred")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(server, ["nobody@example.test"])

    def moved():
        stats = json.loads(browser.get("/console/stats.json")[1])
        return stats if stats["totals"]["in"] >= before["totals"]["in"] + N + 1 else None

    stats = wait_for(moved, timeout=40, interval=1.0)  # the sampler ticks every 10 s
    assert sum(slot["in"] for slot in stats["minutes"]) >= N + 1
    assert sum(slot["in"] for slot in stats["fine"]) >= N + 1
    assert stats["totals"]["out"] >= N and stats["totals"]["rejected"] >= 1
    assert stats["rates"]["delivered"] is not None
    assert any(code.startswith("5") for code in stats["rejections_by_code"])

    def dashboard():
        html = browser.get("/")[1]
        return html if "down.test</a>" in html else None

    html = wait_for(dashboard, timeout=30)  # erin's message waits for down.test
    assert re.search(r'data-stat="totals.in">(\d+)<', html)
    assert int(re.search(r'data-stat="totals.in">(\d+)<', html).group(1)) >= N + 1
    assert "nobody@example.test" in html or "5.1.1" in html  # a top rejection reason

    status, html = browser.get("/activity")
    assert html.count('data-outcome="delivered"') >= N
    assert 'data-test="rejection" data-code="550"' in html and "nobody@example.test" in html

    # The sampler's task and the mail-log handler end with the console.
    assert server.stop() == 0
    log = server.log() + (tmp_path / "mail.log").read_text()
    assert "console-stats" not in log and "pigeon.mail: 01" in log
    assert "Traceback" not in log and "Task was destroyed" not in log, log[-3000:]


def test_with_workers_the_dashboard_says_what_it_counts_and_the_queue_is_whole(
    pigeon_factory, tmp_path
):
    port = free_port()
    server = pigeon_factory(
        'workers = 2\nrelay_networks = ["127.0.0.0/8"]\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        '[delivery]\nconnect_timeout = 2.0\n[admin]\nmetrics_listen = ""\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'
    )
    AdminStore.in_data_dir(server.data_dir).add("admin", PASSWORD)
    browser = logged_in(server)
    html = browser.get("/")[1]
    assert 'id="workers-note"' in html and "2 processes" in html
    for i in range(4):  # the kernel spreads the connections over both processes
        send(server, [f"user{i}@down.test"], f"message {i}")

    def all_deferred():
        found = rows(browser.get("/queue?state=deferred")[1])
        return found if len(found) == 4 else None

    assert wait_for(all_deferred, timeout=30)  # the queue is shared: all four are listed
