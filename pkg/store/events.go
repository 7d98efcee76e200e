package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/example/users/pkg/user"
)

// EventKey identifies a CloudEvent: CloudEvents makes source and id
// unique together, and a redelivery carries the same pair.
type EventKey struct {
	Source string
	ID     string
}

// EventReply is what an event that created a user is answered with, the
// first time and on every redelivery.
type EventReply struct {
	UserID int64     // the created user
	ID     string    // the reply event's id
	Time   time.Time // when the event was processed
	Data   []byte    // the user as the API showed it when it was created
	// Duplicate is true when the event had been processed before and this
	// call created nothing.
	Duplicate bool
}

// CreateForEvent creates user n on behalf of the event key, exactly once:
// it returns the reply stored for key if the event was processed before,
// and otherwise creates the user and stores the reply in one transaction.
//
// The store's timeout bounds the whole transaction: its statements answer
// at once, unless a concurrent delivery of the same event holds the key,
// and that one is bounded the same way.
func (s *Store) CreateForEvent(ctx context.Context, key EventKey, n user.New) (EventReply, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.createForEvent(ctx, key, n)
}

// The statements on processed_events.
const (
	recordEvent = `INSERT INTO processed_events (source, id) VALUES ($1, $2)
		ON CONFLICT (source, id) DO NOTHING RETURNING reply_id, processed_at`
	recordReply = "UPDATE processed_events SET user_id = $1, reply_data = $2 WHERE source = $3 AND id = $4"
	readReply   = "SELECT user_id, reply_id, reply_data, processed_at FROM processed_events WHERE source = $1 AND id = $2"
)

// createForEvent is CreateForEvent without the store's timeout.
//
// The event's key is inserted before the user. A concurrent delivery of
// the same event then waits on that key inside PostgreSQL until the first
// transaction ends: if it committed, ON CONFLICT DO NOTHING skips the
// insert and the stored reply is read; if it rolled back (the name was
// taken, the connection dropped), the waiting delivery takes over. Inserting
// the user first instead would make the second delivery fail on the
// username's unique index and report a conflict with itself.
func (s *Store) createForEvent(ctx context.Context, key EventKey, n user.New) (EventReply, error) {
	var out EventReply
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		qctx, done := s.observe(ctx, recordEvent)
		err := tx.QueryRowContext(qctx, recordEvent, key.Source, key.ID).Scan(&out.ID, &out.Time)
		done(err)
		if errors.Is(err, sql.ErrNoRows) {
			// Nothing inserted: the event was processed before.
			out, err = s.storedReply(ctx, tx, key)
			return err
		}
		if err != nil {
			return fmt.Errorf("record event: %w", classify(err))
		}
		u, err := s.create(ctx, tx, n)
		if err != nil {
			return err
		}
		data, _ := json.Marshal(u) // a User always marshals
		out.UserID, out.Data = u.ID, data
		qctx, done = s.observe(ctx, recordReply)
		_, err = tx.ExecContext(qctx, recordReply, out.UserID, string(out.Data), key.Source, key.ID)
		done(err)
		if err != nil {
			return fmt.Errorf("record event reply: %w", classify(err))
		}
		return nil
	})
	if err != nil {
		var taken *user.TakenError
		if errors.Is(err, user.ErrUnavailable) || errors.As(err, &taken) {
			return EventReply{}, err
		}
		// BEGIN and COMMIT errors come from database/sql unclassified. A
		// failed COMMIT leaves the outcome unknown; reporting the database
		// as unavailable gets the event redelivered, and the redelivery
		// finds the stored reply if the commit did happen.
		return EventReply{}, classify(err)
	}
	return out, nil
}

// storedReply reads the reply recorded for key by the delivery that
// processed it first.
func (s *Store) storedReply(ctx context.Context, tx *sql.Tx, key EventKey) (EventReply, error) {
	out := EventReply{Duplicate: true}
	var userID sql.NullInt64
	var data sql.NullString
	ctx, done := s.observe(ctx, readReply)
	err := tx.QueryRowContext(ctx, readReply, key.Source, key.ID).Scan(&userID, &out.ID, &data, &out.Time)
	done(err)
	if errors.Is(err, sql.ErrNoRows) {
		// The row that conflicted is gone again; only a manual delete does
		// that. A retry will see a consistent state.
		return EventReply{}, fmt.Errorf("read processed event: %w: it vanished while being read", user.ErrUnavailable)
	}
	if err != nil {
		return EventReply{}, fmt.Errorf("read processed event: %w", classify(err))
	}
	if !data.Valid {
		// Committed rows always have one; retrying cannot help.
		return EventReply{}, fmt.Errorf("processed event %q from %q has no stored reply", key.ID, key.Source)
	}
	out.UserID, out.Data = userID.Int64, []byte(data.String)
	return out, nil
}

// inTx runs fn in a transaction, committed if fn returns nil and rolled
// back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		// A rollback that fails has lost the connection, and the
		// transaction with it; fn's error is the one to report.
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
