-- pgbench script: POST /user's statement (pkg/store/store.go, insertUser),
-- a unique user per transaction; each is its own commit, as in the service.
\set n random(1, 1000000000)
INSERT INTO users (username, email) VALUES ('u' || :n || '_' || :client_id, 'u' || :n || '_' || :client_id || '@example.com') RETURNING id, created_at;
