"""Outbound TLS policy: which TLS a delivery to a next hop must have (MTA-STS, DANE)."""
