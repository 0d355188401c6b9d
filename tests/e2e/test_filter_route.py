"""A content filter on loopback that shares our host name, reached by an
explicit `smtp:[host]:port` route (the form docs/config.md recommends for
filters), is not a mail loop; an MX-looked-up peer greeting with our name is.
"""

from __future__ import annotations

import smtplib

import pytest

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def test_same_named_filter_behind_an_explicit_route_gets_the_mail(pigeon_factory):
    # Both processes are "pigeon.test" (PigeonProcess's default host name).
    filter_ = pigeon_factory('[domains."filtered.test"]\n')
    front = pigeon_factory(
        f'relay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n'
        f'[transports]\n"filtered.test" = "smtp:[127.0.0.1]:{filter_.port}"\n'
    )
    with smtplib.SMTP("127.0.0.1", front.port, timeout=10) as s:
        s.sendmail("a@localhost", ["x@filtered.test"], b"Subject: scan me\r\n\r\nhi\r\n")
    assert wait_for(lambda: maildir_messages(filter_.data_dir, "x@filtered.test"), timeout=20), (
        front.log()
    )
    assert "5.4.6" not in front.log()
