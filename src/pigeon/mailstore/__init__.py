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

  * Later: per-mailbox UIDs (IMAP UIDVALIDITY/UIDNEXT, POP3 UIDL) get their
    own module here, beside the names they key on, so delivery and the
    readers keep agreeing on one layout.
"""

from pigeon.mailstore.flags import parse_info, with_flags
from pigeon.mailstore.maildir import ensure_maildir, forget_maildir, maildir_exists
from pigeon.mailstore.names import sized_name, unique_base
from pigeon.mailstore.paths import maildir_path, safe_component

__all__ = [
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
