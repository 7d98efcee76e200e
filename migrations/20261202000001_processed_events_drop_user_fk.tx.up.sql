-- The event's record no longer references users with a foreign key: its
-- check ran a lookup on users for every CloudEvent create, 12 % of
-- PostgreSQL's CPU on that statement (docs/performance.md), and nothing
-- needs it. The create writes the user and the record in one statement,
-- so the user_id it stores exists; a user deleted by hand leaves a
-- user_id that the reply's LEFT JOIN finds no row for, which the service
-- answers as it did the NULL that ON DELETE SET NULL left.
-- Idempotent, as every migration here: a crash before bun records it
-- re-runs it.
ALTER TABLE processed_events DROP CONSTRAINT IF EXISTS processed_events_user_id_fkey;
