"""The IMAP commands by name: the one table the session runs (readers/imap/session.py).

Each family lives in its own module: cmd_any (every state, the connection),
cmd_auth (logging in), cmd_mailboxes (mailboxes), cmd_fetch, cmd_search,
cmd_messages (what changes messages), cmd_idle.
"""

from __future__ import annotations

from pigeon.readers.imap import (
    cmd_any,
    cmd_auth,
    cmd_fetch,
    cmd_idle,
    cmd_mailboxes,
    cmd_messages,
    cmd_search,
)
from pigeon.readers.imap.session import Handlers

__all__ = ["HANDLERS"]

HANDLERS = Handlers(
    commands={
        "CAPABILITY": cmd_any.capability,
        "NOOP": cmd_any.noop,
        "CHECK": cmd_any.check,
        "LOGOUT": cmd_any.logout,
        "ID": cmd_any.id_,
        "ENABLE": cmd_any.enable,
        "NAMESPACE": cmd_any.namespace,
        "STARTTLS": cmd_any.starttls,
        "LOGIN": cmd_auth.login,
        "AUTHENTICATE": cmd_auth.authenticate,
        "SELECT": cmd_mailboxes.select,
        "EXAMINE": cmd_mailboxes.select,
        "CLOSE": cmd_mailboxes.close,
        "UNSELECT": cmd_mailboxes.unselect,
        "CREATE": cmd_mailboxes.create,
        "DELETE": cmd_mailboxes.delete,
        "RENAME": cmd_mailboxes.rename,
        "SUBSCRIBE": cmd_mailboxes.subscribe,
        "UNSUBSCRIBE": cmd_mailboxes.unsubscribe,
        "LIST": cmd_mailboxes.list_,
        "LSUB": cmd_mailboxes.list_,
        "STATUS": cmd_mailboxes.status,
        "FETCH": cmd_fetch.fetch,
        "SEARCH": cmd_search.search,
        "STORE": cmd_messages.store,
        "COPY": cmd_messages.copy,
        "MOVE": cmd_messages.copy,
        "EXPUNGE": cmd_messages.expunge,
        "APPEND": cmd_messages.append,
        "IDLE": cmd_idle.idle,
    },
    capabilities=cmd_any.capabilities,
    idle_done=cmd_idle.idle_done,
    auth_response=cmd_auth.auth_response,
)
