// Package testenv sets up what handler and end-to-end tests share: a
// fresh, migrated database and the composed service over it.
package testenv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/migrations"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/config"
)

// DB returns a fresh database with every migration applied, migrated
// over a connection of its own to cfg.Migration(), as `users migrate`
// does.
func DB(tb testing.TB) (*bun.DB, config.Database) {
	tb.Helper()
	cfg := pgtest.New(tb)
	db := pgtest.Open(tb, cfg)
	r, err := migrations.New(pgtest.Open(tb, cfg.Migration()))
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
// Every exchange with it is checked against api/openapi.yaml (OpenAPI).
// Logs go to w (nil: discarded).
func Service(tb testing.TB, w io.Writer) (*httptest.Server, *bun.DB, *app.Function) {
	tb.Helper()
	db, cfg := DB(tb)
	srv, fn := Serve(tb, cfg, w)
	return srv, db, fn
}

// Serve starts one more composed service over database cfg, as another
// pod would: its own pool, its own store.
func Serve(tb testing.TB, cfg config.Database, w io.Writer) (*httptest.Server, *app.Function) {
	tb.Helper()
	if w == nil {
		w = io.Discard
	}
	fn := app.New(w)
	if err := fn.StartConfig(context.Background(), Config(tb, cfg)); err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(OpenAPI(tb, fn))
	tb.Cleanup(func() {
		srv.Close()
		_ = fn.Stop(context.Background())
	})
	return srv, fn
}

// Unreachable returns database settings whose address refuses
// connections, for testing how the service behaves without its database.
func Unreachable(tb testing.TB) config.Database {
	tb.Helper()
	cfg := pgtest.Server(tb)
	cfg.Port = loopback.FreePort(tb)
	cfg.DialTimeout = 500 * time.Millisecond
	return cfg
}

// Problem is a decoded problem details body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// ReadProblem checks that resp is an application/problem+json body with
// the given status and returns it decoded.
func ReadProblem(tb testing.TB, resp *http.Response, status int) Problem {
	tb.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		tb.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		tb.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != status || p.Title == "" || p.Type == "" {
		tb.Fatalf("problem %+v lacks type, title or the right status", p)
	}
	return p
}

// CountUsers returns the number of rows in users.
func CountUsers(tb testing.TB, db *bun.DB) int {
	tb.Helper()
	n, err := db.NewSelect().TableExpr("users").Count(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return int(n)
}
