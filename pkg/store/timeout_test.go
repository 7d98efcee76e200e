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

// TestQueuedCallsGiveUp: with every turn and the pool's one connection
// taken (as when calls all wait on a silent database; here a list whose
// reader does not read), each call fails as unavailable within the
// store's timeout instead of queueing until the caller's deadline.
func TestQueuedCallsGiveUp(t *testing.T) {
	const timeout = 300 * time.Millisecond
	db, _ := testenv.DB(t)
	db.SetMaxOpenConns(1)
	s := store.New(db, timeout)
	release, holding, listed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	seed, err := s.Create(context.Background(), user.New{Username: "seed", Email: "seed@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		listed <- s.List(context.Background(), 0, 0, func(*user.User) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	n := user.New{Username: "queued", Email: "queued@example.com"}
	for name, call := range map[string]func(context.Context) error{
		"Get":    func(ctx context.Context) error { _, err := s.Get(ctx, seed.ID); return err },
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
	close(release)
	if err := <-listed; err != nil {
		t.Fatal(err)
	}
	if rows := testenv.CountUsers(t, db); rows != 1 {
		t.Fatalf("%d users stored, want only the seed: calls that failed stored theirs", rows)
	}
}

// TestCallWaitsForAConnectionHeldOutsideTheTurns: a call that finds a
// turn free but the pool taken outside the turns (in the service, by
// database/sql's own dials for callers that gave up) waits for a
// connection, and succeeds once one is given back within its timeout.
func TestCallWaitsForAConnectionHeldOutsideTheTurns(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1)
	s := store.New(db, cfg.QueryTimeout)
	held, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const hold = 200 * time.Millisecond
	time.AfterFunc(hold, func() { _ = held.Close() })
	start := time.Now()
	if _, err := s.Create(context.Background(), user.New{Username: "late", Email: "late@example.com"}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < hold {
		t.Fatalf("created after %v, before the held connection was given back (%v)", took, hold)
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

// TestExpiredCallKeepsTheConnection: a call whose deadline has already
// passed fails as unavailable without sending anything, so the pooled
// connection it would have timed out on is kept.
func TestExpiredCallKeepsTheConnection(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1)
	s := store.New(db, cfg.QueryTimeout)
	u, err := s.Create(context.Background(), user.New{Username: "kept", Email: "kept@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.Get(ctx, u.ID); !errors.Is(err, user.ErrUnavailable) {
		t.Fatalf("Get past its deadline: %v, want ErrUnavailable", err)
	}
	if st := db.Stats(); st.OpenConnections != 1 || st.Idle != 1 {
		t.Fatalf("pool after the expired call: %d open, %d idle; want the one connection kept", st.OpenConnections, st.Idle)
	}
	if _, err := s.Get(context.Background(), u.ID); err != nil {
		t.Fatal(err)
	}
}

// TestCallWithATurnKeepsItsDeadline: a call that finds a turn free but
// the pool taken outside the turns for longer than its deadline fails as
// unavailable at that deadline, not when the connection comes back,
// whether the deadline is the store's timeout or the caller's, if
// sooner. Before the fix its wait for the connection could not end, as
// with a silent database, where creates answered after twice the
// timeout.
func TestCallWithATurnKeepsItsDeadline(t *testing.T) {
	const bound, hold = 300 * time.Millisecond, 3 * time.Second
	for _, by := range []struct {
		name    string
		timeout time.Duration // the store's
		ctx     func() (context.Context, context.CancelFunc)
	}{
		{"store", bound, func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"caller", 30 * time.Second, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), bound)
		}},
	} {
		t.Run(by.name, func(t *testing.T) {
			db, _ := testenv.DB(t)
			db.SetMaxOpenConns(1)
			s := store.New(db, by.timeout)
			seed, err := s.Create(context.Background(), user.New{Username: "seed", Email: "seed@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			n := user.New{Username: "late", Email: "late@example.com"}
			for _, tc := range []struct {
				name string
				call func(context.Context) error
			}{
				{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, seed.ID); return err }},
				{"Create", func(ctx context.Context) error { _, err := s.Create(ctx, n); return err }},
				{"CreateForEvent", func(ctx context.Context) error {
					_, err := s.CreateForEvent(ctx, store.EventKey{Source: "/t", ID: "1"}, n)
					return err
				}},
				{"Ping", s.Ping},
			} {
				t.Run(tc.name, func(t *testing.T) {
					held, err := db.Conn(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					timer := time.AfterFunc(hold, func() { _ = held.Close() })
					defer func() {
						if timer.Stop() {
							_ = held.Close()
						}
					}()
					ctx, cancel := by.ctx()
					defer cancel()
					start := time.Now()
					err = tc.call(ctx)
					took := time.Since(start)
					if !errors.Is(err, user.ErrUnavailable) {
						t.Fatalf("err = %v after %v, want ErrUnavailable", err, took)
					}
					if took < bound || took > bound+time.Second {
						t.Fatalf("gave up after %v, want the deadline %v (the connection came back at %v)", took, bound, hold)
					}
				})
			}
			if rows := testenv.CountUsers(t, db); rows != 1 {
				t.Fatalf("%d users stored, want only the seed", rows)
			}
		})
	}
}
