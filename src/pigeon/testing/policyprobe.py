"""Ask the real receive pipeline single questions, without an SMTP session.

Contract:
  * `PolicyProbe(config, ...)` builds the pipeline `pigeon.policy.build`
    builds for `config` (the same checks, in the same order) with injected
    seams: the clock, the Maildir test, the free-space reserve, the
    new-mailbox counts and the router (one with an SRS codec, say) (CONTRIBUTING.md, rule 14). Tests and the golden
    decision files (tests/unit/policy/golden/) use it.
  * Each question runs on a fresh connection (`session()`): from `ip`,
    logged in as `user` (owning `owned`) when given, after MAIL FROM
    `sender` for questions past MAIL. The answer is the refusal (a `Reply`)
    or None (accepted); `verdict()` gives the whole `Verdict`.
  * The built-in checks answer at once; asking a stage that has an
    asynchronous check is a TypeError here (use the pipeline directly).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from pigeon.config.schema import Config
from pigeon.policy.api import Verdict
from pigeon.policy.build import PolicyDeps, build_pipeline
from pigeon.policy.newmailboxes import NewMailboxLimiter
from pigeon.policy.pipeline import ReceivePipeline, ReceiveSession, StageAnswer
from pigeon.policy.reserve import Room
from pigeon.proto.params import MailParams, RcptParams
from pigeon.proto.reply import Reply
from pigeon.routing.resolve import Router
from pigeon.vocab.address import Address, parse_path

CLIENT = "203.0.113.9"


def address(text: str) -> Address | None:
    """`text` ("<a@b>", "a@b", "<>", "<postmaster>") as the session parses it."""
    path = text if text.startswith("<") else f"<{text}>"
    return parse_path(path, allow_null=True, smtputf8=True)


def _now(answer: StageAnswer) -> Verdict:
    if not isinstance(answer, Verdict):
        raise TypeError("an asynchronous check answered: use the pipeline directly")
    return answer


class PolicyProbe:
    """The real pipeline of one configuration, asked one question at a time."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] | None = None,
        maildir_exists: Callable[[str], bool] | None = None,
        space: Room | None = None,
        new_mailboxes: NewMailboxLimiter | None = None,
        router: Router | None = None,
    ) -> None:
        deps = PolicyDeps(router or Router(config), space=space)
        self.deps = dataclasses.replace(
            deps,
            clock=clock or deps.clock,
            maildir_exists=maildir_exists or deps.maildir_exists,
            new_mailboxes=new_mailboxes or deps.new_mailboxes,
        )
        self.config = config
        self.pipeline: ReceivePipeline = build_pipeline(config, self.deps)

    def session(
        self, ip: str = CLIENT, *, user: str | None = None, owned: Iterable[str] = ()
    ) -> ReceiveSession:
        session = self.pipeline.session(ip)
        if user is not None:
            refusal = _now(session.auth(user, frozenset(owned))).reply
            if refusal is not None:
                raise AssertionError(f"the login of {user} was refused: {refusal}")
            session.authenticated()  # as the session reports after its 235
        return session

    def mail(
        self, sender: str, ip: str = CLIENT, *, user: str | None = None, owned: Iterable[str] = ()
    ) -> Reply | None:
        session = self.session(ip, user=user, owned=owned)
        return _now(session.mail(address(sender), MailParams())).reply

    def rcpt(
        self,
        recipient: str,
        ip: str = CLIENT,
        *,
        user: str | None = None,
        owned: Iterable[str] = (),
    ) -> Reply | None:
        return self.verdict(recipient, ip, user=user, owned=owned).reply

    def verdict(
        self,
        recipient: str,
        ip: str = CLIENT,
        *,
        sender: str = "<>",
        user: str | None = None,
        owned: Iterable[str] = (),
    ) -> Verdict:
        """The RCPT verdict, after MAIL FROM `sender` (accepted or not)."""
        session = self.session(ip, user=user, owned=owned)
        session.mail(address(sender), MailParams())
        target = address(recipient)
        assert target is not None, "RCPT needs an address"
        return _now(session.rcpt(target, RcptParams()))
