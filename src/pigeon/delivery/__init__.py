"""Delivery agents (delivery/api.py): smtp, lmtp, local (Maildir), discard."""
