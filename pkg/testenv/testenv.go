// Package testenv sets up what handler and end-to-end tests share: a
// fresh, migrated database and the composed service over it.
package testenv

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/uptrace/bun"

	"github.com/example/users/migrations"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/pgtest"
)

// DB returns a fresh database with every migration applied.
func DB(tb testing.TB) (*bun.DB, config.Database) {
	tb.Helper()
	cfg := pgtest.New(tb)
	db := pgtest.Open(tb, cfg)
	r, err := migrations.New(db)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.Up(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return db, cfg
}

// Config returns a valid service configuration for database cfg.
func Config(tb testing.TB, cfg config.Database) config.Config {
	tb.Helper()
	c, err := config.Load(pgtest.Env(cfg))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Service starts the composed service over a fresh migrated database and
// returns it behind an httptest server, with the database for checks.
// Logs go to w (nil: discarded).
func Service(tb testing.TB, w io.Writer) (*httptest.Server, *bun.DB, *app.Function) {
	tb.Helper()
	db, cfg := DB(tb)
	if w == nil {
		w = io.Discard
	}
	fn := app.New(w)
	if err := fn.StartConfig(context.Background(), Config(tb, cfg)); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(fn)
	tb.Cleanup(func() {
		srv.Close()
		_ = fn.Stop(context.Background())
	})
	return srv, db, fn
}
