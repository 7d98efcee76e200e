-- pgbench script: 1 user(s) in one statement, the shape of a batch's (pkg/store/store.go,
-- insertUsers; the store sends the arrays as text[] parameters). Against create.sql.
INSERT INTO users (username, email) SELECT * FROM unnest(ARRAY['u' || random()], ARRAY['e' || random() || '@example.com']) RETURNING id, username, created_at;
