package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

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

// processedEvent maps the processed_events table.
type processedEvent struct {
	bun.BaseModel `bun:"table:processed_events"`

	Source      string         `bun:"source,pk"`
	ID          string         `bun:"id,pk"`
	UserID      sql.NullInt64  `bun:"user_id"`
	ReplyID     string         `bun:"reply_id"`
	ReplyData   sql.NullString `bun:"reply_data"`
	ProcessedAt time.Time      `bun:"processed_at"`
}

func (p processedEvent) reply(duplicate bool) EventReply {
	return EventReply{UserID: p.UserID.Int64, ID: p.ReplyID, Time: p.ProcessedAt, Data: []byte(p.ReplyData.String), Duplicate: duplicate}
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
	return CreateForEvent(ctx, s.db, key, n)
}

// CreateForEvent is Store.CreateForEvent over db.
//
// The event's key is inserted before the user. A concurrent delivery of
// the same event then waits on that key inside PostgreSQL until the first
// transaction ends: if it committed, ON CONFLICT DO NOTHING skips the
// insert and the stored reply is read; if it rolled back (the name was
// taken, the connection dropped), the waiting delivery takes over. Inserting
// the user first instead would make the second delivery fail on the
// username's unique index and report a conflict with itself.
func CreateForEvent(ctx context.Context, db *bun.DB, key EventKey, n user.New) (EventReply, error) {
	var out EventReply
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ev := processedEvent{Source: key.Source, ID: key.ID}
		res, err := tx.NewInsert().
			Model(&ev).
			Column("source", "id").
			On("CONFLICT (source, id) DO NOTHING").
			Returning("reply_id, processed_at").
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("record event: %w", classify(err))
		}
		if inserted, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("record event: %w", classify(err))
		} else if inserted == 0 {
			err := tx.NewSelect().Model(&ev).WherePK().Scan(ctx)
			if err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					// The row that conflicted is gone again; only a manual
					// delete does that. A retry will see a consistent state.
					return fmt.Errorf("read processed event: %w: it vanished while being read", user.ErrUnavailable)
				}
				return fmt.Errorf("read processed event: %w", classify(err))
			}
			if !ev.ReplyData.Valid {
				// Committed rows always have one; retrying cannot help.
				return fmt.Errorf("processed event %q from %q has no stored reply", key.ID, key.Source)
			}
			out = ev.reply(true)
			return nil
		}
		u, err := Create(ctx, tx, n)
		if err != nil {
			return err
		}
		ev.UserID = sql.NullInt64{Int64: u.ID, Valid: true}
		ev.ReplyData = sql.NullString{String: string(u.AppendJSON(nil)), Valid: true}
		if _, err := tx.NewUpdate().
			Model(&ev).
			Column("user_id", "reply_data").
			WherePK().
			Exec(ctx); err != nil {
			return fmt.Errorf("record event reply: %w", classify(err))
		}
		out = ev.reply(false)
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
