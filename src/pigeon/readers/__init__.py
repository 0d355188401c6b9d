"""pigeon.readers: the servers people read their mail with, POP3 and IMAP.

Contract:
  * Layer: above pigeon.mailstore, pigeon.auth, pigeon.proto and pigeon.net
    (docs/architecture.md, "Layers"); nothing below imports it. The readers
    run in the main ("full") process, where local delivery runs
    (app/roles.py).
  * Each protocol is a sans-IO core in pigeon.proto (bytes in, events and
    replies out), a service on the generic listeners (pigeon.net.listener)
    and a per-connection driver here that only moves bytes, asks the login
    rules and touches the Maildir through pigeon.mailstore.
  * Modules:

        login   the protocol-neutral login (pigeon.auth's one rule set:
                passwords, SCRAM keys, the failed-login limiter shared with
                submission, the same log lines) and an account's mailbox
        pop3_service, pop3_driver
                POP3 (RFC 1939, docs/pop3.md)
        imap_service, imap (package: driver, session, command handlers)
                IMAP (RFC 9051 / RFC 3501, docs/imap.md)

Importing this package imports nothing.
"""
