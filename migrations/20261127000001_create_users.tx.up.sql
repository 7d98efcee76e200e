-- Every statement is idempotent: bun records a migration only after its
-- transaction commits, so a crash between the two re-runs it.
CREATE TABLE IF NOT EXISTS users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username   text        NOT NULL CHECK (char_length(username) BETWEEN 1 AND 64),
    email      text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    created_at timestamptz NOT NULL DEFAULT now()
);

--bun:split

-- Uniqueness ignores letter case and is the database's to enforce, so two
-- concurrent requests cannot both create "Alice" and "alice".
CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower_key ON users (lower(username));

--bun:split

CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));
