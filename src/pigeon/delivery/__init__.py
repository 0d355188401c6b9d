"""Delivery agents. Local: Maildir (`deliver_to_maildir`)."""

from pigeon.delivery.maildir import deliver_to_maildir, maildir_path

__all__ = ["deliver_to_maildir", "maildir_path"]
