-- One row per CloudEvent that created a user, keyed as CloudEvents
-- identifies an event: by source and id. The handler inserts the key
-- first, in the same transaction as the user, so a redelivery (even a
-- concurrent one, which waits on the key) finds the stored reply instead of
-- creating a second user, and a crash commits both or neither.
-- Every statement is idempotent: bun records a migration only after its
-- transaction commits, so a crash between the two re-runs it.
CREATE TABLE IF NOT EXISTS processed_events (
    source       text        NOT NULL CHECK (octet_length(source) BETWEEN 1 AND 1024),
    id           text        NOT NULL CHECK (octet_length(id) BETWEEN 1 AND 1024),
    -- NULL inside the creating transaction until the user exists, and if
    -- the user is ever deleted (the stored reply still answers).
    user_id      bigint      REFERENCES users (id) ON DELETE SET NULL,
    -- The reply is stored as sent (json keeps the text as is; jsonb would
    -- reorder it), so every redelivery gets byte-identical data.
    reply_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    reply_data   json,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);
