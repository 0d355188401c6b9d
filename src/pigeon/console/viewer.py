"""The message viewer's responses: the sandboxed HTML frame, attachments, raw source.

Shared by the mailbox pages (console/mailbox_pages.py) and the captured
mail pages (console/capture_pages.py); the message itself is parsed by
web/mailview.py, as the HTTP API parses it.

Contract (the security model, docs/console.md "Mailboxes"):
  * The HTML part of a message is never put into a console page. The
    page holds `<iframe sandbox="" src=...>`: no scripts, a unique opaque
    origin (no cookies, no access to the console), no forms, popups or
    top navigation. The frame's URL answers with `frame_response`, whose
    own headers hold even if the sandbox attribute were stripped:
    FRAME_CSP (`default-src 'none'`: no script, no remote image, style
    sheet, font or frame; images only as data: or cid:; inline style
    allowed; framed only by the console itself), `X-Frame-Options:
    SAMEORIGIN`, `Referrer-Policy: no-referrer`, `nosniff` and no caching.
  * `clean_html(html, images)` rewrites the HTML as a second line of
    defence and so that a reader is not tracked: <script> and its text,
    <base>, <link>, <meta> (http-equiv refresh would navigate the frame
    to a remote page: neither CSP nor the sandbox stops that), frames,
    objects and embeds, comments and processing instructions are
    dropped; so are event-handler attributes (on*), and every URL
    attribute a browser would fetch or follow (href, src, srcset,
    background, poster, action, formaction, ping, xlink:href...) unless
    it is a data: image or a cid: reference to an image of the message
    (then inlined as a data: URL, `cid_images`). A link's target is kept
    in its title, so the reader sees where it pointed; clicking opens
    nothing. In CSS (<style> and style attributes) @import is dropped and
    every url() but a data: image becomes `none`. The count of removed
    remote references is returned so a page can say "remote content
    blocked".
  * The rewrite is stdlib html.parser based: it does not claim to parse
    exactly as a browser does, which is why the frame's headers and the
    sandbox, not this function, are what stops scripts and remote loads.
  * `attachment_response` sends decoded octets as a download only:
    `application/octet-stream`, `Content-Disposition: attachment` with a
    filename of A-Z a-z 0-9 . _ - (web/mailbox_routes.py `safe_filename`),
    `X-Content-Type-Options: nosniff` and `Content-Security-Policy:
    sandbox` (nothing a message carried is rendered by the browser as a
    console page). `raw_response`: the stored octets as text/plain.
  * `html_frame(data)` and `attachment_download(data, n)` are the
    frame and attachment answers for a whole message (blocking: parse in
    a worker thread); a message without HTML, or without attachment n, is
    404, an index that is not 0-MAX_ATTACHMENT 400.
  * Pure functions of their inputs; a malformed message or HTML never
    raises (the worst case is text shown escaped).
"""

from __future__ import annotations

import base64
import email.policy
import html as htmlmod
import re
from collections.abc import Mapping
from email.message import Message
from email.parser import BytesParser
from html.parser import HTMLParser
from urllib.parse import unquote

from aiohttp import web

from pigeon.web import mailview
from pigeon.web.mailbox_routes import MAX_ATTACHMENT, safe_filename

__all__ = [
    "ATTACHMENT_CSP",
    "FRAME_CSP",
    "attachment_download",
    "attachment_response",
    "cid_images",
    "clean_html",
    "frame_response",
    "html_frame",
    "raw_response",
]

#: The HTML frame's own policy (W3C CSP Level 3): see the module contract.
FRAME_CSP = (
    "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
#: Attachments and raw source: a document that is its own unique origin, no scripts.
ATTACHMENT_CSP = "sandbox; default-src 'none'"
_NO_STORE = "private, no-store"

#: Elements dropped with their content (their text is code, not prose).
_DROP_CONTENT = frozenset({"script"})
#: Elements dropped, their content kept (or void elements: nothing to keep).
_DROP_TAG = frozenset(
    "base link meta iframe frame frameset object embed applet param portal".split()
)
#: Attributes whose value a browser fetches or navigates to.
_URL_ATTRS = frozenset(
    "href src srcset imagesrcset background poster lowsrc dynsrc action formaction ping "
    "xlink:href data codebase cite longdesc manifest icon srcdoc".split()
)
#: CSS that loads something: url(...) (images, fonts) and @import (style sheets).
_CSS_URL = re.compile(r"""url\s*\(\s*(?:"[^"]*"|'[^']*'|[^)]*)\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"@import[^;]*;?", re.I)
_NAME = re.compile(r"^[a-zA-Z_][-a-zA-Z0-9_:.]*$")
_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*$", re.I)
#: Images inlined from cid: references: only these types, at most this many octets in all.
_IMAGE_TYPES = frozenset({"image/png", "image/gif", "image/jpeg", "image/webp"})
CID_MAX = 4 * 1024 * 1024


class _Cleaner(HTMLParser):
    def __init__(self, images: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.images = images
        self.out: list[str] = []
        self.skipping = 0  # inside a dropped element's content (<script>)
        self.raw_text = False  # inside <style>: its text is CSS, not escaped
        self.blocked = 0

    def _url(self, tag: str, name: str, value: str) -> str | None:
        """The value a URL attribute keeps, or None (dropped)."""
        text = value.strip()
        if name == "src" and tag == "img":
            if text.lower().startswith("cid:"):
                inlined = self.images.get(_cid_key(text[4:]))
                if inlined is not None:
                    return inlined
                return None  # an image the message does not carry: nothing to load
            if _DATA_IMAGE.match(text):
                return text
        if text and not text.startswith("#"):
            self.blocked += 1
        return None

    def _css(self, text: str) -> str:
        """CSS without @import and with every url() but data: images as `none`."""

        def url(found: re.Match[str]) -> str:
            inner = found.group(0)[found.group(0).index("(") + 1 : -1].strip().strip("\"'")
            if _DATA_IMAGE.match(inner):
                return found.group(0)
            self.blocked += 1
            return "none"

        def imported(found: re.Match[str]) -> str:
            self.blocked += 1
            return ""

        return _CSS_URL.sub(url, _CSS_IMPORT.sub(imported, text))

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        out = []
        title = None
        has_title = any(n == "title" for n, _ in attrs)
        for name, value in attrs:
            if not _NAME.match(name) or name.startswith("on") or name == "http-equiv":
                continue
            if name in _URL_ATTRS:
                if name == "href" and tag in ("a", "area") and value and not has_title:
                    title = value.strip()
                kept = self._url(tag, name, value or "")
                if kept is None:
                    continue
                value = kept
            elif name == "style" and value:
                value = self._css(value)
            if value is None:
                out.append(" " + name)
            else:
                out.append(f' {name}="{htmlmod.escape(value, quote=True)}"')
        if title:
            out.append(f' title="{htmlmod.escape(title, quote=True)}"')
        return "".join(out)

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], close: bool) -> None:
        if self.skipping or not _NAME.match(tag):
            return
        if tag in _DROP_CONTENT:
            self.skipping = 0 if close else 1
            return
        if tag in _DROP_TAG:
            self.blocked += any(n in _URL_ATTRS for n, v in attrs if v)
            return
        self.out.append(f"<{tag}{self._attrs(tag, attrs)}{' /' if close else ''}>")
        self.raw_text = tag == "style" and not close

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, close=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, close=True)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag in _DROP_CONTENT:
                self.skipping = 0
            return
        self.raw_text = False
        if _NAME.match(tag) and tag not in _DROP_TAG and tag not in _DROP_CONTENT:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        # html.parser ends <style> at "</style", so its text cannot close it early.
        self.out.append(self._css(data) if self.raw_text else htmlmod.escape(data, quote=False))

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype") and not self.out:
            self.out.append("<!DOCTYPE html>")

    # Comments (conditional comments included), processing instructions
    # and CDATA sections are dropped: the default handlers do nothing.


def _cid_key(text: str) -> str:
    """A Content-ID as a cid: URL names it (RFC 2392: %-encoded, no angle brackets)."""
    return unquote(text.strip().strip("<>")).lower()


def clean_html(html: str, images: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(the rewritten HTML, how many remote references were removed); see the contract."""
    cleaner = _Cleaner(images or {})
    try:
        cleaner.feed(html)
        cleaner.close()
    except Exception:  # html.parser gave up: show the source as text, inert
        return "<pre>" + htmlmod.escape(html) + "</pre>", 0
    return "".join(cleaner.out), cleaner.blocked


def cid_images(data: bytes) -> dict[str, str]:
    """{content-id: data: URL} of the message's PNG, GIF, JPEG and WebP parts
    that have a Content-ID (RFC 2392), at most CID_MAX octets in all."""
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(data)
    except Exception:
        return {}
    out: dict[str, str] = {}
    budget = CID_MAX
    for part in msg.walk():
        if not isinstance(part, Message) or part.is_multipart():
            continue
        cid = part.get("Content-ID")
        ctype = part.get_content_type()
        if cid is None or ctype not in _IMAGE_TYPES:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or len(payload) > budget:
            continue
        budget -= len(payload)
        encoded = base64.b64encode(payload).decode("ascii")
        out[_cid_key(str(cid))] = f"data:{ctype};base64,{encoded}"
    return out


def frame_response(html: str, images: Mapping[str, str] | None = None) -> web.Response:
    """The HTML part, rewritten, with the frame's own headers (see the contract)."""
    cleaned, _ = clean_html(html, images)
    return web.Response(
        text=cleaned,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": FRAME_CSP,
            "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": _NO_STORE,
        },
    )


def attachment_response(filename: str | None, n: int, octets: bytes) -> web.Response:
    """Attachment `n` as a download that the browser never renders (see the contract)."""
    return web.Response(
        body=octets,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{safe_filename(filename, n)}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": ATTACHMENT_CSP,
            "Cache-Control": _NO_STORE,
        },
    )


def raw_response(data: bytes) -> web.Response:
    """The stored message as plain text (its octets; the browser shows, never renders)."""
    return web.Response(
        body=data,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": ATTACHMENT_CSP,
            "Cache-Control": _NO_STORE,
        },
    )


def html_frame(data: bytes) -> web.Response:
    """The frame of message `data` (404 without an HTML part)."""
    part = mailview.detail(data)["html"]
    if part is None:
        raise web.HTTPNotFound(reason="the message has no HTML part")
    return frame_response(part, cid_images(data))


def attachment_download(data: bytes, index: str) -> web.Response:
    """Attachment `index` (the URL's text) of message `data` as a download."""
    if not (index.isascii() and index.isdigit()) or int(index) > MAX_ATTACHMENT:
        raise web.HTTPBadRequest(reason=f"an attachment index: 0 to {MAX_ATTACHMENT}")
    n = int(index)
    try:
        _, filename, octets = mailview.attachment(data, n)
    except IndexError:
        raise web.HTTPNotFound(reason=f"the message has no attachment {n}") from None
    return attachment_response(filename, n, octets)
