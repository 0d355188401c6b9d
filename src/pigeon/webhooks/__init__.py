"""Webhooks: mail events POSTed to HTTP endpoints, signed, from a durable outbox.

    payload    an event as the JSON document a receiver gets (pure)
    signature  the `Pigeon-Signature` header: HMAC-SHA256 over "<t>.<body>" (pure)
    backoff    when a failed POST is tried again, and when an event is given up (pure)
    outbox     the durable directory of events not yet taken (files, fsync)
    http       one POST over HTTP/1.1 (asyncio; TLS from the standard library, verified)
    service    `Webhooks`: events in (cheap, never raises), the sender task out

docs/webhooks.md is the user's guide; `[[webhooks]]` is pigeon.config.webhooks.
"""
