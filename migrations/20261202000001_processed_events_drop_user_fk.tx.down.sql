-- Back to the foreign key: records whose user is gone get the NULL that
-- ON DELETE SET NULL would have left, then the constraint is checked.
UPDATE processed_events e SET user_id = NULL
WHERE user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = e.user_id);
ALTER TABLE processed_events DROP CONSTRAINT IF EXISTS processed_events_user_id_fkey;
ALTER TABLE processed_events ADD CONSTRAINT processed_events_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
