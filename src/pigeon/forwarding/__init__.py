"""Forwarding: what pigeon does to a message it passes on to another domain.

`forwarding.srs` rewrites the envelope sender of a forwarded copy (the
Sender Rewriting Scheme) and reverses the bounces that come back;
`forwarding.secrets` keeps the SRS secret; `forwarding.arc` seals a
forwarded copy with an ARC set (RFC 8617). docs/mail-auth.md, "Forwarding:
SRS and ARC".
"""
