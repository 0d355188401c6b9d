"""Observability: operator logging set-up and the mail log.

`setup_logging` (obs.logsetup) decides where and how lines are written;
`MailLog` (obs.maillog) writes the one-line-per-message-event log.
"""

from pigeon.obs.logsetup import setup_logging
from pigeon.obs.maillog import MailLog

__all__ = ["MailLog", "setup_logging"]
