package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestCreateOnce: a key's first create stores the user; the same key and
// user again replays it and creates nothing; the same key with another
// user is refused; a failed create records nothing; an expired key is new.
func TestCreateOnce(t *testing.T) {
	db, cfg := testenv.DB(t)
	s := store.New(db, cfg.QueryTimeout).WithIdempotency(store.Idempotency{TTL: time.Hour, Wait: time.Second})
	ctx := context.Background()
	alice := user.New{Username: "alice", Email: "alice@example.com"}
	first, replayed, err := s.CreateOnce(ctx, "k1", alice)
	if err != nil || replayed {
		t.Fatalf("first create: %v, replayed %v", err, replayed)
	}
	for _, tt := range []struct {
		name     string
		key      string
		n        user.New
		replayed bool
		err      error
	}{
		{"retry", "k1", alice, true, nil},
		{"retry again", "k1", alice, true, nil},
		{"same key, another user", "k1", user.New{Username: "bob", Email: "bob@example.com"}, false, user.ErrKeyReused},
		{"same key, the email alone differs", "k1", user.New{Username: "alice", Email: "alice2@example.com"}, false, user.ErrKeyReused},
		{"another key, a taken name", "k2", user.New{Username: "ALICE", Email: "a3@example.com"}, false, &user.TakenError{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, replayed, err := s.CreateOnce(ctx, tt.key, tt.n)
			switch want := tt.err.(type) {
			case nil:
				if err != nil || replayed != tt.replayed || u != first {
					t.Fatalf("got %+v, replayed %v, %v; want %+v, replayed %v", u, replayed, err, first, tt.replayed)
				}
			case *user.TakenError:
				if !errors.As(err, &want) {
					t.Fatalf("err = %v, want a TakenError", err)
				}
			default:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			}
		})
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
	var keys int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&keys); err != nil || keys != 1 {
		t.Fatalf("%d keys stored (%v), want 1: a failed create stores none", keys, err)
	}

	// k2's create failed: its retry with a free name is a first request.
	bob := user.New{Username: "bob", Email: "bob@example.com"}
	if _, replayed, err := s.CreateOnce(ctx, "k2", bob); err != nil || replayed {
		t.Fatalf("k2 after its failed create: %v, replayed %v", err, replayed)
	}
	// An expired key is new: it creates again, even with another user.
	if _, err := db.ExecContext(ctx, "UPDATE idempotency_keys SET created_at = now() - interval '2 hours' WHERE key = 'k1'"); err != nil {
		t.Fatal(err)
	}
	carol := user.New{Username: "carol", Email: "carol@example.com"}
	u, replayed, err := s.CreateOnce(ctx, "k1", carol)
	if err != nil || replayed || u.Username != "carol" {
		t.Fatalf("expired key: %+v, replayed %v, %v; want carol created", u, replayed, err)
	}
	if again, replayed, err := s.CreateOnce(ctx, "k1", carol); err != nil || !replayed || again != u {
		t.Fatalf("retry of the renewed key: %+v, replayed %v, %v", again, replayed, err)
	}
}

// TestCreateOnceInUse: while the key's first request holds it, a retry
// waits up to Wait, then gets ErrKeyInUse and creates nothing; once the
// first is done, the key is free.
func TestCreateOnceInUse(t *testing.T) {
	db, cfg := testenv.DB(t)
	s := store.New(db, cfg.QueryTimeout).WithIdempotency(store.Idempotency{TTL: time.Hour, Wait: 200 * time.Millisecond})
	ctx := context.Background()
	tx, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What CreateOnce's own transaction takes for the key.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(1970498425, hashtext('busy'))"); err != nil {
		t.Fatal(err)
	}
	n := user.New{Username: "dora", Email: "dora@example.com"}
	start := time.Now()
	_, _, err = s.CreateOnce(ctx, "busy", n)
	if !errors.Is(err, user.ErrKeyInUse) {
		t.Fatalf("err = %v, want ErrKeyInUse", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("answered after %v, want about the 200 ms wait", d)
	}
	if n := testenv.CountUsers(t, db); n != 0 {
		t.Fatalf("%d users after ErrKeyInUse, want 0", n)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, replayed, err := s.CreateOnce(ctx, "busy", n); err != nil || replayed {
		t.Fatalf("after the holder ended: %v, replayed %v", err, replayed)
	}
}

// TestDeleteExpiredKeys: only keys past the TTL go, in batches of the
// limit, and a key another transaction has locked is skipped, not waited
// for.
func TestDeleteExpiredKeys(t *testing.T) {
	db, cfg := testenv.DB(t)
	s := store.New(db, cfg.QueryTimeout).WithIdempotency(store.Idempotency{TTL: time.Hour, Wait: time.Second})
	ctx := context.Background()
	for i, name := range []string{"e1", "e2", "e3", "live"} {
		if _, _, err := s.CreateOnce(ctx, name, user.New{Username: name, Email: name + "@example.com"}); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := db.ExecContext(ctx, "UPDATE idempotency_keys SET created_at = now() - interval '2 hours' WHERE key <> 'live'"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT 1 FROM idempotency_keys WHERE key = 'e3' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var total int64
	for _, want := range []int64{1, 1, 0} {
		n, err := s.DeleteExpiredKeys(ctx, 1)
		if err != nil || n != want {
			t.Fatalf("DeleteExpiredKeys = %d, %v; want %d", n, err, want)
		}
		total += n
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v beside a locked key: it must skip it, not wait", d)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpiredKeys(ctx, 10); err != nil || n != 1 {
		t.Fatalf("after the lock went: deleted %d, %v; want e3's 1", n, err)
	}
	var left []string
	rows, err := db.QueryContext(ctx, "SELECT key FROM idempotency_keys")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		left = append(left, k)
	}
	if len(left) != 1 || left[0] != "live" || total != 2 {
		t.Fatalf("keys left %v after deleting %d, want [live]", left, total)
	}
}
