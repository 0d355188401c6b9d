"""pigeon.auth: accounts, password hashing and SASL authentication (RFC 4954, 4616, 5802, 7677).

Modules:
    scram       SCRAM-SHA-256 key derivation and proof checks (RFC 5802/7677), SASLprep (RFC 4013)
    sasl        sans-IO SASL server mechanisms PLAIN, LOGIN, SCRAM-SHA-256 (no I/O, no clock)
    passwords   argon2id hashing (argon2-cffi) of account passwords
    accounts    the account store: SQLite under data_dir (names, hashes, SCRAM keys, addresses)
    ratelimit   failed-login accounting per client address (slow down, then refuse)
    service     what the SMTP driver calls: verify a login (slow: run it in a thread), SCRAM keys

Importing this package imports nothing: `pigeon.proto` uses `sasl` and `scram`
and must stay free of I/O modules (tests/unit/proto/test_no_io.py).
"""
