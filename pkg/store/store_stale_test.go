package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// A query that times out must not leave its late answer on a pooled
// connection for the next query to read. pgdriver's prepared-statement
// path does exactly that (v1.2.18); the store's connections prepare their
// statements and are discarded after a timeout instead, and this test
// fails if they are kept (the Get below then returns user 1).
func TestGetAfterTimeoutReadsItsOwnAnswer(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1) // the timed-out query and the next share a connection
	ctx := context.Background()
	s := store.New(db, cfg.QueryTimeout)
	for _, name := range []string{"first", "second"} {
		if _, err := s.Create(ctx, user.New{Username: name, Email: name + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up: prepare whatever the store prepares, on the one connection.
	if _, err := s.Get(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// Another session locks the table, so the Get below waits in
	// PostgreSQL past its deadline and is answered only after the lock goes.
	tx, err := pgtest.Open(t, cfg).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = s.Get(tctx, 1)
	cancel()
	if !errors.Is(err, user.ErrUnavailable) {
		t.Fatalf("Get on a locked table: %v, want ErrUnavailable", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the late answer arrive

	u, err := s.Get(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != 2 || u.Username != "second" {
		t.Fatalf("Get(2) after a timed-out Get(1) returned %+v: the late answer was read", u)
	}
}
