"""Aggregate reports pigeon sends about the mail it saw: DMARC (RFC 7489 §7.2) and
TLS-RPT (RFC 8460). `records` holds what the checks and the delivery side hand over."""
