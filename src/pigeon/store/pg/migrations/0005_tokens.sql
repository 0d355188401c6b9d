-- 0005: the HTTP API's tokens, shared by the nodes (issue 17: one set of
-- accounts; a token may be bound to an account). Expand-only.
-- min-node-schema: 1
--
-- What `pigeon token add` writes with a shared store; every node's HTTP
-- API authenticates against these rows (web/tokens.py, PgTokenStore). As in
-- `<data_dir>/api-tokens.json`, the token itself is never stored: only its
-- SHA-256 (hex), shown once by `pigeon token add`.
CREATE TABLE IF NOT EXISTS pigeon_api_tokens (
    name        text PRIMARY KEY,
    sha256      text NOT NULL,
    scopes      text[] NOT NULL,
    created     double precision NOT NULL,
    tenant      text,
    account     text
);
