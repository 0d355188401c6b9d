"""pigeon.auth: accounts, password hashing and who may log in (RFC 4954).

Modules:
    passwords   argon2id hashing (argon2-cffi) of account passwords
    accounts    the account store: SQLite under data_dir (names, hashes, SCRAM keys, addresses)
    ratelimit   failed-login accounting per client address (slow down, then refuse)
    service     verify a password, look up SCRAM keys (slow: in a thread pool)
    login       the one login rule set (LoginRules: limits, authzid, logs) and its SMTP
                face (LoginGate); the readers' face is pigeon.readers.login

The SASL mechanisms themselves are sans-IO protocol code: pigeon.proto.sasl
and pigeon.proto.scram (this package sits above pigeon.proto).
Importing this package imports nothing.
"""
