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

// TestQueuedCallsGiveUp: with every pooled connection taken (as when they
// all wait on a silent database), each call fails as unavailable within
// the store's timeout instead of queueing until the caller's deadline.
func TestQueuedCallsGiveUp(t *testing.T) {
	const timeout = 300 * time.Millisecond
	db, _ := testenv.DB(t)
	db.SetMaxOpenConns(1)
	s := store.New(db, timeout)
	held, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := user.New{Username: "queued", Email: "queued@example.com"}
	for name, call := range map[string]func(context.Context) error{
		"Get":    func(ctx context.Context) error { _, err := s.Get(ctx, 1); return err },
		"Create": func(ctx context.Context) error { _, err := s.Create(ctx, n); return err },
		"List": func(ctx context.Context) error {
			return s.List(ctx, 0, 0, func(*user.User) error { return nil })
		},
		"CreateForEvent": func(ctx context.Context) error {
			_, err := s.CreateForEvent(ctx, store.EventKey{Source: "/t", ID: "1"}, n)
			return err
		},
		"Ping": s.Ping,
	} {
		t.Run(name, func(t *testing.T) {
			// The caller would wait far longer: the store must not.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := call(ctx)
			took := time.Since(start)
			if !errors.Is(err, user.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if took < timeout || took > timeout+time.Second {
				t.Fatalf("gave up after %v, want the store's timeout %v", took, timeout)
			}
		})
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if rows := testenv.CountUsers(t, db); rows != 0 {
		t.Fatalf("%d users stored by calls that failed", rows)
	}
}

// TestListOutlastsTheTimeout: a list whose consumer pauses for longer
// than the timeouts between rows, so the whole walk takes several times
// them, is not cut. The driver's read timeout restarts with every row and
// the store bounds only getting the connection; a deadline per statement
// (or a driver deadline set once per query) would fail here.
func TestListOutlastsTheTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	seeded, cfg := testenv.DB(t)
	if _, err := seeded.ExecContext(context.Background(), `INSERT INTO users (username, email)
		SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, 3000) AS i`); err != nil {
		t.Fatal(err)
	}
	cfg.QueryTimeout = timeout
	s := store.New(pgtest.Open(t, cfg), timeout)

	start := time.Now()
	n := 0
	err := s.List(context.Background(), 0, 0, func(u *user.User) error {
		if n++; n%1000 == 0 {
			time.Sleep(timeout + 100*time.Millisecond)
		}
		return nil
	})
	took := time.Since(start)
	if err != nil || n != 3000 {
		t.Fatalf("List: %d of 3000 users in %v, err %v", n, took, err)
	}
	if took < 3*timeout {
		t.Fatalf("the walk took %v, not several times the %v timeout: the test proves nothing", took, timeout)
	}
}
