"""The server session's state machine as data (RFC 5321 §4.1.4, RFC 3030).

Contract:
  * `State` names where a session is; `TABLE[(state, verb)]` is the state a
    *successful* command leads to; `REFUSALS[(state, verb)]` the reply for a
    command that is out of sequence there. A (state, verb) pair in neither
    table cannot happen (every verb is covered for every command state; a
    unit test checks that). `server.py` consults these tables and nothing
    else to decide sequencing; docs can be generated from them.
  * Some transitions depend on the outcome of a DECISION (MAIL and RCPT are
    only taken when the driver accepts); the table gives the target on
    success, and the session stays put otherwise.
  * `VERB_FLAGS` holds per-verb data: whether the verb resets the mail
    transaction, whether its line may be long (ESMTP parameters), whether it
    must end a pipelined batch (RFC 2920 §3.1), whether it takes an
    argument ("required", "forbidden", "optional") and whether it is a
    "junk" command (NOOP, RSET, VRFY, HELP, ETRN: Postfix's
    smtpd_junk_command_limit counts the same ones, HELP aside, which it
    does not implement) that moves no mail and only keeps a session alive.

States:
    CONNECTED --start()--> GREETED --EHLO/HELO--> READY --MAIL--> MAIL
    MAIL --RCPT(accepted)--> RCPT --DATA--> DATA --end of data--> READY
    RCPT --BDAT--> BDAT --BDAT ... LAST--> READY
    any --QUIT/fatal--> CLOSED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pigeon.proto import reply as R
from pigeon.proto.reply import Reply


class State(enum.Enum):
    CONNECTED = "connected"  # before start(): greeting not yet sent
    GREETED = "greeted"  # 220 sent, waiting for EHLO/HELO
    READY = "ready"  # no mail transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # receiving dot-terminated content
    BDAT = "bdat"  # a BDAT transaction is under way (between/in chunks)
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class VerbFlags:
    resets_transaction: bool = False
    long_line: bool = False
    ends_batch: bool = False
    argument: str = "optional"  # "required" | "forbidden" | "optional"
    junk: bool = False  # counted against SessionConfig.max_junk_commands


VERB_FLAGS: dict[str, VerbFlags] = {
    "EHLO": VerbFlags(resets_transaction=True, ends_batch=True, argument="required"),
    "HELO": VerbFlags(resets_transaction=True, ends_batch=True, argument="required"),
    "MAIL": VerbFlags(long_line=True, argument="required"),
    "RCPT": VerbFlags(long_line=True, argument="required"),
    "DATA": VerbFlags(ends_batch=True, argument="forbidden"),
    "BDAT": VerbFlags(argument="required"),
    "RSET": VerbFlags(resets_transaction=True, argument="forbidden", junk=True),
    "NOOP": VerbFlags(ends_batch=True, junk=True),
    "QUIT": VerbFlags(ends_batch=True, argument="forbidden"),
    "VRFY": VerbFlags(ends_batch=True, argument="required", junk=True),
    "HELP": VerbFlags(ends_batch=True, junk=True),
    "STARTTLS": VerbFlags(ends_batch=True, argument="forbidden"),  # RFC 3207 §4
    "AUTH": VerbFlags(long_line=True, ends_batch=True, argument="required"),  # RFC 4954 §4
    "ETRN": VerbFlags(ends_batch=True, argument="required", junk=True),  # RFC 1985 §5
}

#: States in which a command line is read (DATA content is not).
COMMAND_STATES = (State.GREETED, State.READY, State.MAIL, State.RCPT, State.BDAT)
#: States inside a mail transaction.
TRANSACTION_STATES = (State.MAIL, State.RCPT, State.DATA, State.BDAT)

_S = State
TABLE: dict[tuple[State, str], State] = {}
REFUSALS: dict[tuple[State, str], Reply] = {}

for _st in COMMAND_STATES:
    # Verbs allowed anywhere; they leave the state alone (RSET/EHLO reset it).
    for _verb in ("NOOP", "VRFY", "HELP", "QUIT"):
        TABLE[(_st, _verb)] = _st
    TABLE[(_st, "EHLO")] = _S.READY
    TABLE[(_st, "HELO")] = _S.READY
    TABLE[(_st, "RSET")] = _S.GREETED if _st is _S.GREETED else _S.READY

# Before EHLO/HELO nothing transactional (RFC 5321 §4.1.4: EHLO first); the
# client learns STARTTLS/AUTH from the EHLO reply, so they need it too.
for _verb in ("MAIL", "RCPT", "DATA", "BDAT", "STARTTLS", "AUTH"):
    REFUSALS[(_S.GREETED, _verb)] = R.NEED_HELO

# STARTTLS and AUTH only outside a mail transaction (RFC 3207 §4, RFC 4954 §4);
# the session itself refuses them when not offered or already done (secure.py).
TABLE[(_S.READY, "STARTTLS")] = _S.READY
TABLE[(_S.READY, "AUTH")] = _S.READY
for _st in (_S.MAIL, _S.RCPT, _S.BDAT):
    for _verb in ("STARTTLS", "AUTH"):
        REFUSALS[(_st, _verb)] = R.TRANSACTION_IN_PROGRESS

# ETRN outside a transaction only (RFC 1985 §5: "at any time", but Postfix,
# like us, refuses it inside one to keep the transaction's state simple).
TABLE[(_S.READY, "ETRN")] = _S.READY
REFUSALS[(_S.GREETED, "ETRN")] = R.NEED_HELO
for _st in (_S.MAIL, _S.RCPT, _S.BDAT):
    REFUSALS[(_st, "ETRN")] = R.TRANSACTION_IN_PROGRESS

TABLE[(_S.READY, "MAIL")] = _S.MAIL
REFUSALS[(_S.READY, "RCPT")] = R.NEED_MAIL
REFUSALS[(_S.READY, "DATA")] = R.NEED_MAIL
REFUSALS[(_S.READY, "BDAT")] = R.NEED_MAIL

REFUSALS[(_S.MAIL, "MAIL")] = R.NESTED_MAIL
TABLE[(_S.MAIL, "RCPT")] = _S.RCPT
REFUSALS[(_S.MAIL, "DATA")] = R.NEED_RCPT  # or NO_VALID_RECIPIENTS, see server
REFUSALS[(_S.MAIL, "BDAT")] = R.NEED_RCPT

REFUSALS[(_S.RCPT, "MAIL")] = R.NESTED_MAIL
TABLE[(_S.RCPT, "RCPT")] = _S.RCPT
TABLE[(_S.RCPT, "DATA")] = _S.DATA
TABLE[(_S.RCPT, "BDAT")] = _S.BDAT

REFUSALS[(_S.BDAT, "MAIL")] = R.NESTED_MAIL
REFUSALS[(_S.BDAT, "RCPT")] = R.BAD_SEQUENCE
REFUSALS[(_S.BDAT, "DATA")] = R.BDAT_AFTER_DATA_MIX  # RFC 3030 §3: no mixing
TABLE[(_S.BDAT, "BDAT")] = _S.BDAT


def lookup(state: State, verb: str) -> State | Reply:
    """The next state for a successful `verb` in `state`, or the refusal reply."""
    nxt = TABLE.get((state, verb))
    if nxt is not None:
        return nxt
    return REFUSALS.get((state, verb), R.BAD_SEQUENCE)
