-- 0002: the nodes of a cluster (issue 17: status, node names, queue IDs). Expand-only.
-- min-node-schema: 1
--
-- One row per node name ever used on this database (pigeon/store/pg/nodes.py).
-- A running node refreshes `last_seen` every few seconds (its heartbeat) and
-- sets `stopped_at` at a clean stop; a node whose heartbeat is older than
-- nodes.STALE seconds without a stop has died or lost the database. Rows are
-- never removed by pigeon: `node_id` (the queue ID tail of the node's mail)
-- must stay the name's for as long as its mail may be queued.
CREATE TABLE IF NOT EXISTS pigeon_nodes (
    name       text PRIMARY KEY,
    node_id    integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- The process that runs under this name now (random per start), so a
    -- second process under the same name is refused and a stale row taken over.
    instance   text,
    host       text,
    pid        integer,
    version    text,
    listen     text,
    started    timestamptz,
    last_seen  timestamptz,
    stopped_at timestamptz
);
