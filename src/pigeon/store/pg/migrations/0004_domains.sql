-- 0004: the domains and aliases nodes share (issue 17, item 1). Expand-only.
-- min-node-schema: 1
--
-- What `pigeon domain add` and `pigeon alias add` write; every node adds
-- them to those of its configuration file (pigeon/config/shared.py: the
-- file's entry wins a conflict) at start, on `pigeon reload`, and when a
-- change is announced on the pigeon_admin channel ({"op": "directory"},
-- app/clusterwake.py). Values are stored normalised (lowercased domains,
-- the [aliases] key's form), as the code checks them before writing.
--
-- A local domain, as a name in `domains = [...]`: any local part accepted
-- (pigeon's [domains] are local domains; relaying is [transports]' business).
CREATE TABLE IF NOT EXISTS pigeon_domains (
    domain      text PRIMARY KEY,
    added       timestamptz NOT NULL DEFAULT now()
);

-- An [aliases] entry: "local@domain", or the catch-all "@domain", to its
-- target addresses in order.
CREATE TABLE IF NOT EXISTS pigeon_aliases (
    address     text PRIMARY KEY,
    targets     text[] NOT NULL CHECK (cardinality(targets) > 0),
    added       timestamptz NOT NULL DEFAULT now()
);
