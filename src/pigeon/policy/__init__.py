"""SMTP policy decisions (recipients, relaying)."""

from pigeon.policy.recipients import RecipientPolicy

__all__ = ["RecipientPolicy"]
