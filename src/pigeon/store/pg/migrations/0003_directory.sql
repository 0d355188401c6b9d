-- 0003: the directory nodes share (issue 17): accounts, their addresses, and
-- the abuse controls' counters. Expand-only: creates what is missing.
-- min-node-schema: 1
--
-- Accounts: the embedded accounts.db's two tables (pigeon/auth/accounts.py),
-- so that an account added on one node logs in on every node. Names and
-- addresses are stored normalised (lowercased) by the code, as there. The
-- columns are in accounts.db's order: both run the same statements
-- (AccountRecords), which insert by position.
CREATE TABLE IF NOT EXISTS pigeon_accounts (
    name        text PRIMARY KEY,
    argon2      text NOT NULL,
    scram_salt  bytea NOT NULL,
    scram_iter  integer NOT NULL,
    stored_key  bytea NOT NULL,
    server_key  bytea NOT NULL,
    created     double precision NOT NULL
);

-- The addresses an account may use in MAIL FROM; one account per address.
CREATE TABLE IF NOT EXISTS pigeon_addresses (
    address     text PRIMARY KEY,
    account     text NOT NULL REFERENCES pigeon_accounts (name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS pigeon_addresses_account ON pigeon_addresses (account);

-- The abuse controls' state (pigeon/policy/abusestate.py: rate-limit token
-- buckets, greylist triplets), the rows of the embedded abuse.db, shared.
-- `version` orders changes: each node pulls the rows changed since the last
-- version it saw (pigeon/policy/sharedstate.py; writers serialise on an
-- advisory lock, so versions commit in order).
CREATE SEQUENCE IF NOT EXISTS pigeon_abuse_version;
CREATE TABLE IF NOT EXISTS pigeon_abuse_state (
    kind        text NOT NULL,
    key         text NOT NULL,
    a           double precision,
    b           double precision,
    c           double precision,
    version     bigint NOT NULL DEFAULT nextval('pigeon_abuse_version'),
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS pigeon_abuse_state_version ON pigeon_abuse_state (version);
