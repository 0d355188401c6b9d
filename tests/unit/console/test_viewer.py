"""The message viewer's responses (console/viewer.py): the HTML frame's rewrite
and headers, attachments as downloads, raw source as text."""

from __future__ import annotations

from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from pigeon.console.viewer import (
    FRAME_CSP,
    attachment_download,
    attachment_response,
    cid_images,
    clean_html,
    html_frame,
    raw_response,
)

HOSTILE = (
    "<!doctype html><html><head>"
    '<meta http-equiv="refresh" content="0;url=http://evil.example/">'
    '<base href="http://evil.example/">'
    '<link rel="stylesheet" href="http://evil.example/x.css">'
    '<link rel="dns-prefetch" href="//tracker.example">'
    "<style>p > b { color: red }</style></head>"
    '<body onload="steal()"><script>steal("x")</script>'
    "<p>Hi &amp; <b>bye</b> &lt;script&gt;</p>"
    '<img src="http://tracker.example/p.gif" srcset="http://tracker.example/2x.gif 2x">'
    '<a href="https://example.com/a?b=1&amp;c=2" ping="http://tracker.example/">a link</a>'
    '<iframe src="http://evil.example/"></iframe><object data="http://evil.example/x.swf">'
    '</object><!-- a comment --><svg><a xlink:href="javascript:steal()">z</a></svg>'
    '<form action="http://evil.example/"><input name="pw" onfocus="steal()"></form>'
    "</body></html>"
)


def test_the_rewrite_drops_scripts_navigation_and_remote_references():
    cleaned, blocked = clean_html(HOSTILE)
    lowered = cleaned.lower()
    for gone in (
        "<script", "steal", "<meta", "refresh", "<base", "<link", "evil.example",
        "tracker.example", "<iframe", "<object", "onload", "onfocus", "a comment",
        "javascript:", "ping=", "action=",
    ):  # fmt: skip
        assert gone not in lowered, gone
    # Prose, markup and style stay; text is escaped again; CSS is left raw.
    assert "<p>Hi &amp; <b>bye</b> &lt;script&gt;</p>" in cleaned
    assert "<style>p > b { color: red }</style>" in cleaned
    assert cleaned.startswith("<!DOCTYPE html><html>")
    # A link keeps its target as a title only: clicking opens nothing.
    assert '<a title="https://example.com/a?b=1&amp;c=2">a link</a>' in cleaned
    assert blocked >= 8


def test_css_loads_nothing_remote():
    cleaned, blocked = clean_html(
        "<style>@import url(http://evil.example/a.css); @import 'b.css';"
        "body { background: url( 'http://tracker.example/p.gif' ) no-repeat }"
        "@font-face { src: url(http://evil.example/x.woff) }"
        ".logo { background: url(data:image/png;base64,AAAA) }</style>"
        '<p style="background-image: URL(http://tracker.example/q.gif)">x</p>'
    )
    assert "example" not in cleaned and "@import" not in cleaned
    assert "background: none no-repeat" in cleaned and "src: none" in cleaned
    assert "url(data:image/png;base64,AAAA)" in cleaned
    assert '<p style="background-image: none">x</p>' in cleaned
    assert blocked == 5


def test_cid_and_data_images_are_kept_and_unknown_cids_dropped():
    images = {"logo@example.org": "data:image/png;base64,iVBORw0K"}
    cleaned, blocked = clean_html(
        '<img src="cid:logo@example.org"><img src="CID:%3Cmissing@x%3E">'
        '<img src="data:image/gif;base64,R0lGOD"><img src="data:text/html;base64,PHNjcmlwdD4=">',
        images,
    )
    assert cleaned == (
        '<img src="data:image/png;base64,iVBORw0K"><img>'
        '<img src="data:image/gif;base64,R0lGOD"><img>'
    )
    assert blocked == 1  # the data: URL that is no image


@pytest.mark.parametrize(
    "broken",
    [
        '<p title="x>unclosed <b',
        "<scr<script>ipt>alert(1)</script>",
        "<script>unclosed alert(1)",
        '<img src=x onerror="alert(1)"//',
        "<x\x00y onclick=alert(1)>t</x\x00y>",
        "<p\"=1 a'b=2 onclick=alert(1)>u</p>",
        "<svg><script>alert(1)</script></svg>",
        "<![CDATA[<script>alert(1)</script>]]>",
    ],
)
def test_broken_html_stays_inert(broken):
    cleaned, _ = clean_html(broken)
    tags = _Tags()
    tags.feed(cleaned)
    tags.close()
    assert "script" not in [t for t, _ in tags.seen]
    assert not [a for _, attrs in tags.seen for a, _ in attrs if a.startswith("on")]


class _Tags(HTMLParser):
    """The start tags and attributes of a document (what the rewrite let through)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, attrs))


def message_with_parts() -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["Subject"] = "rich"
    msg.set_content("the text")
    msg.add_alternative(
        '<p>the html</p><img src="cid:pic@x"><script>steal()</script>', subtype="html"
    )
    msg.get_payload()[1].add_related(b"\x89PNG\r\n", maintype="image", subtype="png", cid="<pic@x>")
    msg.add_attachment(b"<script>alert(1)</script>", maintype="text", subtype="html",
                       filename='../"evil".html')  # fmt: skip
    return msg.as_bytes()


def test_the_frame_answers_with_its_own_policy():
    r = html_frame(message_with_parts())
    assert r.headers["Content-Security-Policy"] == FRAME_CSP
    for directive in (
        "default-src 'none'", "img-src data: cid:", "style-src 'unsafe-inline'",
        "frame-ancestors 'self'",
    ):  # fmt: skip
        assert directive in FRAME_CSP
    assert "script-src" not in FRAME_CSP  # default-src 'none' forbids every script
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.content_type == "text/html" and r.charset == "utf-8"
    assert r.text is not None and "<p>the html</p>" in r.text and "steal" not in r.text
    assert 'src="data:image/png;base64,' in r.text  # the related image, inlined


def test_cid_images_only_take_images():
    images = cid_images(message_with_parts())
    assert list(images) == ["pic@x"] and images["pic@x"].startswith("data:image/png;base64,")


def test_a_message_without_html_has_no_frame():
    from aiohttp import web

    with pytest.raises(web.HTTPNotFound):
        html_frame(b"Subject: plain\r\n\r\nno html\r\n")


def test_attachments_are_downloads_never_rendered():
    r = attachment_download(message_with_parts(), "1")
    assert r.body == b"<script>alert(1)</script>"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == 'attachment; filename="evil_.html"'
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
    r = attachment_response(None, 3, b"x")
    assert r.headers["Content-Disposition"] == 'attachment; filename="attachment-3"'
    r = attachment_response("r\u00e9sum\u00e9\r\nX-Evil: 1.pdf", 0, b"x")
    assert r.headers["Content-Disposition"] == 'attachment; filename="r_sum_X-Evil_1.pdf"'


@pytest.mark.parametrize("index", ["2", "x", "-1", "99999", "\u0661"])
def test_a_missing_or_bad_attachment_index_is_an_error(index):
    from aiohttp import web

    with pytest.raises((web.HTTPNotFound, web.HTTPBadRequest)):
        attachment_download(message_with_parts(), index)


def test_raw_source_is_plain_text():
    r = raw_response(b"Subject: x\r\n\r\n<html><script>1</script>\r\n")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
