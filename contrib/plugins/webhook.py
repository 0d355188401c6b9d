"""Webhook: tell an HTTP endpoint of every message pigeon receives.

    [[plugins]]
    path = "/usr/share/pigeon/plugins/webhook.py"
    timeout = 10
    [plugins.config]
    url = "https://hooks.example.net/mail"
    headers = ["Authorization: Bearer s3cret"]    # extra request header lines
    wait = false                                   # true: the 250 waits for the POST

At the end of the data it POSTs one JSON object (Content-Type:
application/json) to `url`:

    {"queue_id": "...", "client_ip": "192.0.2.1", "helo": "...", "sender": "a@b",
     "recipients": ["c@d"], "size": 1234, "authenticated_as": null,
     "subject": "...", "message_id": "<...>"}

With `wait = false` (the default) the POST is made in the background: the
client's 250 does not wait for the endpoint, and a failure (a refused
connection, a status other than 2xx, `request_timeout` passing) is logged,
never refused to the client. With `wait = true` the 250 waits for a 2xx
answer, and a failure is 451 4.3.0 (try again later), so the endpoint
hears of every message that is accepted; it is bounded by the plugin's
`timeout`. A message refused after this stage (a failed commit) may be
reported without having been accepted.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pigeon.api import Message, PluginContext, SessionFacts

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)


class Plugin:
    @dataclass(frozen=True)
    class Settings:
        url: str
        headers: list[str] = field(default_factory=list)
        wait: bool = False
        request_timeout: float = 10.0

        def __post_init__(self) -> None:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url must be http:// or https://, got {self.url!r}")
            for line in self.headers:
                if ":" not in line or "\r" in line or "\n" in line:
                    raise ValueError(f'headers: "Name: value" lines, got {line!r}')

    def __init__(self, settings: Settings, context: PluginContext) -> None:
        self.settings = settings
        self.log = context.log
        self._background: set[asyncio.Task[None]] = set()

    async def end_of_data(self, session: SessionFacts, message: Message) -> None:
        body = json.dumps(self._report(session, message)).encode()
        if self.settings.wait:
            await asyncio.to_thread(self._post, body)
            return
        task = asyncio.ensure_future(self._post_quietly(message.queue_id, body))
        self._background.add(task)  # a reference until it is done
        task.add_done_callback(self._background.discard)

    def _report(self, session: SessionFacts, message: Message) -> dict[str, Any]:
        head = _HEADERS.parsebytes(message.header_section())
        return {
            "queue_id": message.queue_id,
            "client_ip": session.client_ip,
            "helo": session.helo,
            "sender": str(session.sender) if session.sender is not None else "",
            "recipients": [str(address) for address, _ in session.recipients],
            "size": message.size,
            "authenticated_as": session.user,
            "subject": str(head.get("Subject", "")),
            "message_id": str(head.get("Message-ID", "")),
        }

    async def _post_quietly(self, queue_id: str, body: bytes) -> None:
        try:
            await asyncio.to_thread(self._post, body)
        except Exception as exc:
            self.log.warning("%s: webhook %s failed: %s", queue_id, self.settings.url, exc)

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.settings.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        for line in self.settings.headers:
            name, _, value = line.partition(":")
            request.add_header(name.strip(), value.strip())
        timeout = self.settings.request_timeout
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http(s) only)
            answer.read()  # urlopen raises HTTPError for a status >= 400
