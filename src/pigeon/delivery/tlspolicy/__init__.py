"""Outbound TLS policies: which TLS the SMTP client demands of each recipient domain.

The parts (each module's docstring is its contract):
  * `policy`: the framework. `TlsPolicies.for_nexthop(nexthop)` finds the
    policy of a recipient domain, `DomainPolicy.plan(candidate)` says how to
    connect to one of its MX hosts: DANE (RFC 7672) when the host has
    DNSSEC-validated TLSA records, else its MTA-STS policy (RFC 8461), else
    none (opportunistic, `delivery.tls`). The stricter wins: DANE over
    MTA-STS (RFC 8461 §2).
  * `apply`: connects under a plan (the SMTP agent's seam): a policy that
    requires TLS defers the candidate with a 4.7.x reason rather than
    sending in clear or to an unauthenticated host; testing mode reports
    and delivers; one `TlsRecord` per attempt goes to the report sink.
  * `mtasts` (discovery, cache, refresh), `fetch` (the HTTPS fetch), `sts`
    (the texts), `peer` (the peer's chain, RFC 8460 failure words), `own`
    (the policy file we publish for our own domains), `dane` (DANE for SMTP,
    RFC 7672: `dane_lookup`, `dane_verify`).

This __init__ imports nothing: delivery/smtpc.py imports `peer` from here.
"""
