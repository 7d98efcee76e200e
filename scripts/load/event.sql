-- pgbench script: the CloudEvent create's statement (pkg/store/events.go),
-- with a unique user and event per transaction.
\set n random(1, 1000000000)
WITH u AS (INSERT INTO users (username, email) VALUES ('u' || :n || '_' || :client_id, 'u' || :n || '_' || :client_id || '@example.com') RETURNING id, created_at),
	e AS (INSERT INTO processed_events (source, id, user_id) SELECT '/pgbench', 'e' || :n || '_' || :client_id, id FROM u RETURNING reply_id, processed_at)
	SELECT e.reply_id, e.processed_at, u.id, u.created_at FROM e, u;
