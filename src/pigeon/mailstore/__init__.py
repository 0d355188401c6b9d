"""pigeon.mailstore: the Maildir layout that local delivery, POP3 and IMAP share.

Contract:
  * This package knows where a mailbox lives and how its files are named; it
    never decides whether mail is accepted or delivered (pigeon.policy,
    pigeon.delivery) and never touches the queue.
  * Modules (each pure or doing only the file-system work its name says):

        paths    the Maildir of `local@domain` under the mailbox root, with
                 every name made one safe path component (%-encoding)
        maildir  tmp/ new/ cur/ made sure of, remembered per process
        names    unique file names (the Maildir recipe as Dovecot writes
                 them, with ,S= and ,W= sizes)
        flags    the ":2," info suffix: message flags a reader (POP3, IMAP)
                 sets on a file in cur/

    The mailbox model the readers (IMAP, POP3) use, blocking file I/O they
    call from threads:

        mailbox   the API: MailStore -> UserMail (an account's folders) ->
                  Folder (one session's view: sync, messages, read, flags,
                  expunge, copy, move, append)
        state     the in-memory state of one Maildir, shared by the
                  process's sessions: the scan, UIDs, modseqs, flag renames
        message   MessageInfo: one message as a reader sees it
        uidlist   the `pigeon-uidlist` file (docs/imap.md)
        keywords  the `dovecot-keywords` file: keyword letters a-z
        folders   Maildir++ folders, subscriptions, special use
        transfer  COPY, MOVE, APPEND with UIDPLUS data
        notify    in-process new-mail wake-ups (delivery announces, IMAP
                  IDLE watches)
        errors    FolderError, MessageGone
"""

from pigeon.mailstore.flags import parse_info, with_flags
from pigeon.mailstore.maildir import ensure_maildir, forget_maildir, maildir_exists
from pigeon.mailstore.names import arrival_key, sized_name, unique_base
from pigeon.mailstore.paths import maildir_path, safe_component

__all__ = [
    "arrival_key",
    "ensure_maildir",
    "forget_maildir",
    "maildir_exists",
    "maildir_path",
    "parse_info",
    "safe_component",
    "sized_name",
    "unique_base",
    "with_flags",
]
