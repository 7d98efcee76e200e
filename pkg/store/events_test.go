package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestCreateForEventRedeliveries: every way a second delivery can meet
// the first gets the first one's reply and creates nothing, and a name
// someone else holds is a TakenError that records nothing.
func TestCreateForEventRedeliveries(t *testing.T) {
	db, cfg := testenv.DB(t)
	ctx := context.Background()
	s := store.New(db, cfg.QueryTimeout)
	key := store.EventKey{Source: "/test", ID: "e-1"}
	first, err := s.CreateForEvent(ctx, key, user.New{Username: "eve", Email: "eve@example.com"})
	if err != nil || first.Duplicate || first.UserID == 0 || len(first.Data) == 0 {
		t.Fatalf("first delivery: %+v, %v", first, err)
	}
	for _, tt := range []struct {
		name string
		n    user.New
	}{
		{"same user", user.New{Username: "eve", Email: "eve@example.com"}},
		{"same user, other letter case", user.New{Username: "EVE", Email: "Eve@Example.com"}},
		{"another user", user.New{Username: "mallory", Email: "mallory@example.com"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CreateForEvent(ctx, key, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Duplicate || got.ID != first.ID || !got.Time.Equal(first.Time) || got.UserID != first.UserID || string(got.Data) != string(first.Data) {
				t.Errorf("redelivery answered %+v\nwant the first reply %+v", got, first)
			}
		})
	}
	// Taken by a user the event did not create: a TakenError, and nothing
	// is recorded, so the event can succeed later with another name.
	_, err = s.CreateForEvent(ctx, store.EventKey{Source: "/test", ID: "e-2"}, user.New{Username: "Eve", Email: "other@example.com"})
	var taken *user.TakenError
	if !errors.As(err, &taken) || taken.Field != "username" {
		t.Fatalf("a taken name: %v, want a TakenError for username", err)
	}
	var n int
	if err := db.DB.QueryRowContext(ctx, "SELECT count(*) FROM processed_events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d events recorded, want 1 (the rejected one left no record)", n)
	}
	if err := db.DB.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d users, want 1", n)
	}
	// A record written with its reply stored (the transaction's form,
	// before the single statement) is answered with that reply.
	if _, err := db.DB.ExecContext(ctx, `INSERT INTO processed_events (source, id, user_id, reply_data)
		VALUES ('/test', 'old', $1, '{"stored":"as sent"}')`, first.UserID); err != nil {
		t.Fatal(err)
	}
	old, err := s.CreateForEvent(ctx, store.EventKey{Source: "/test", ID: "old"}, user.New{Username: "eve", Email: "eve@example.com"})
	if err != nil || !old.Duplicate || string(old.Data) != `{"stored":"as sent"}` {
		t.Errorf("an event with a stored reply: %+v, %v", old, err)
	}
	// The user deleted by hand (no foreign key keeps the record in step):
	// a redelivery creates no second user and says why it cannot answer.
	if _, err := db.DB.ExecContext(ctx, "DELETE FROM users WHERE id = $1", first.UserID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CreateForEvent(ctx, key, user.New{Username: "eve", Email: "eve@example.com"}); err == nil {
		t.Errorf("a redelivery whose user is gone answered %+v, want an error", got)
	}
	if err := db.DB.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d users after a redelivery whose user is gone, want 0", n)
	}
}
