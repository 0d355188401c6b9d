-- 0001: the queue (issue 17). Expand-only: creates what is missing.
-- min-node-schema: 1
--
-- One row per queued message. `envelope` is the JSON of
-- pigeon.queue.model.Envelope.to_dict(), kept as text (not jsonb) so it
-- round-trips exactly and an unreadable one can be quarantined ('corrupt')
-- instead of refused at write time. Times are Unix seconds (double), as the
-- queue interfaces use them (pigeon/queue/api.py).
CREATE TABLE IF NOT EXISTS pigeon_queue (
    queue_id     text PRIMARY KEY,
    state        text NOT NULL
                 CHECK (state IN ('incoming', 'active', 'deferred', 'hold', 'corrupt', 'capture')),
    next_attempt double precision NOT NULL,
    envelope     text NOT NULL,
    size         bigint NOT NULL,
    -- The claim of an 'active' entry: the node delivering it, and until when
    -- its lease holds (a node that died loses its claims when they expire).
    node         text,
    lease_until  double precision,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- due(): one state's due entries, oldest first, read from the index alone.
CREATE INDEX IF NOT EXISTS pigeon_queue_due
    ON pigeon_queue (state, next_attempt, queue_id)
    WHERE state IN ('incoming', 'deferred');

-- recover() and lease expiry: the claims, by node.
CREATE INDEX IF NOT EXISTS pigeon_queue_claims
    ON pigeon_queue (node, lease_until)
    WHERE state = 'active';

-- Message content in chunks (pigeon/store/pg/content.py: CHUNK octets each),
-- removed with its entry. Chunks rather than large objects: they are
-- replicated, dumped and deleted like any row, and need no lo_unlink.
CREATE TABLE IF NOT EXISTS pigeon_content (
    queue_id text NOT NULL REFERENCES pigeon_queue (queue_id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (queue_id, seq)
);
-- Mail is mostly text already in transfer encodings: compression costs CPU
-- on every commit for little; EXTERNAL keeps it out of line, uncompressed.
ALTER TABLE pigeon_content ALTER COLUMN data SET STORAGE EXTERNAL;
