package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestPreparedStatements: with Prepare, the store's statements are
// prepared once on a connection and reused; without it none is (what a
// pooler in transaction mode that does not track them needs).
func TestPreparedStatements(t *testing.T) {
	for _, tt := range []struct {
		prepare bool
		want    int
	}{{true, 3}, {false, 0}} {
		t.Run(map[bool]string{true: "prepare", false: "text"}[tt.prepare], func(t *testing.T) {
			_, cfg := testenv.DB(t)
			cfg.PreparedStatements = tt.prepare
			db := store.Open(cfg.Options(), "prepare-test")
			t.Cleanup(func() { _ = db.Close() })
			db.SetMaxOpenConns(1) // one session, whose statements the view lists
			ctx := context.Background()
			s := store.New(db, cfg.QueryTimeout)
			for i := range 3 {
				u, err := s.Create(ctx, user.New{Username: "p" + string(rune('a'+i)), Email: "p" + string(rune('a'+i)) + "@example.com"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Get(ctx, u.ID); err != nil {
					t.Fatal(err)
				}
				if err := s.List(ctx, 0, 0, func(*user.User) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := db.DB.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Errorf("%d statements prepared on the session after 3 rounds of create, get and list, want %d", n, tt.want)
			}
		})
	}
}

// TestPreparedAfterMigration: a migration that changes a column's type
// makes the prepared plan stale; the next Get on that connection prepares
// again and succeeds instead of failing once per connection.
func TestPreparedAfterMigration(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	s := store.New(db, cfg.QueryTimeout)
	u, err := s.Create(ctx, user.New{Username: "mig", Email: "mig@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.Open(t, cfg).ExecContext(ctx, "ALTER TABLE users ALTER COLUMN email TYPE varchar(254)"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, u.ID)
	if err != nil || got.Email != "mig@example.com" {
		t.Fatalf("Get after the migration: %+v, %v", got, err)
	}
	if _, err := s.Create(ctx, user.New{Username: "mig2", Email: "mig2@example.com"}); err != nil {
		t.Fatalf("Create after the migration: %v", err)
	}
}

// TestPreparedStatementsBounded: texts beyond the cache's bound are sent
// as text, answered all the same, and leave no statement on the server.
func TestPreparedStatementsBounded(t *testing.T) {
	db, _ := testenv.DB(t)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	for i := range 50 {
		var got int
		q := "SELECT $1::int + " + strconv.Itoa(i)
		if err := db.DB.QueryRowContext(ctx, q, 1).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("%s: %d, %v", q, got, err)
		}
	}
	var n int
	if err := db.DB.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 32 {
		t.Errorf("%d statements prepared on the session after 50 texts, want the bound of 32", n)
	}
}

// TestPreparedStatementsThroughPgBouncer: behind a real PgBouncer 1.18 in
// transaction mode, two clients take turns on one server session. With
// Prepare, the second client's statement collides with the first's on it
// (PgBouncer before 1.21 does not track prepared statements), so
// POSTGRES_PREPARED_STATEMENTS=false is needed there; without Prepare
// both clients are served.
func TestPreparedStatementsThroughPgBouncer(t *testing.T) {
	for _, tt := range []struct {
		prepare bool
		fails   bool
	}{{true, true}, {false, false}} {
		t.Run(map[bool]string{true: "prepare", false: "text"}[tt.prepare], func(t *testing.T) {
			_, direct := testenv.DB(t)
			b := pgtest.StartBouncer(t, pgtest.Server(t), pgtest.Transaction, 1)
			cfg := b.Database(direct)
			cfg.PreparedStatements = tt.prepare
			db := store.Open(cfg.Options(), "prepare-test")
			t.Cleanup(func() { _ = db.Close() })
			ctx := context.Background()
			// Two client connections at once, so database/sql cannot give
			// both statements the same one.
			var conns [2]*sql.Conn
			for i := range conns {
				c, err := db.DB.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
			}
			var errs []error
			for round := range 2 {
				for i, c := range conns {
					var n int
					err := c.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE id > $1", round).Scan(&n)
					if err != nil {
						errs = append(errs, fmt.Errorf("client %d, round %d: %w", i, round, err))
					}
				}
			}
			if n := b.Logins(2); n < 2 {
				t.Fatalf("%d logins through PgBouncer, want 2", n)
			}
			if !tt.fails {
				if len(errs) > 0 {
					t.Fatalf("without prepared statements: %v", errs)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatal("prepared statements worked through PgBouncer 1.18 in transaction mode: if it tracks them now, POSTGRES_PREPARED_STATEMENTS=false is no longer needed there")
			}
			var pgErr pgdriver.Error
			if !errors.As(errs[0], &pgErr) || pgErr.Field('C') != "42P05" || !errors.Is(errs[0], store.ErrSharedSession) {
				t.Fatalf("error %v, want PostgreSQL's 42P05 (already exists) as store.ErrSharedSession, which names the setting", errs[0])
			}
			t.Logf("with prepared statements: %v", errs)
		})
	}
}
