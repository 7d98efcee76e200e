-- Idempotency-Key of POST /user: a key's first create is recorded in the
-- same statement as its user, so a retry with the key finds the user it
-- created, and nothing else. fingerprint is the SHA-256 of the new user
-- asked for, so the same key with another body is refused. Rows older
-- than IDEMPOTENCY_KEY_TTL count as absent and are deleted in batches
-- (created_at's index).
CREATE TABLE idempotency_keys (
	key text PRIMARY KEY,
	fingerprint bytea NOT NULL,
	user_id bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
