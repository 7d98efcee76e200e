// Package pgtest gives each test its own fresh PostgreSQL database on a
// real server. The server is found through the POSTGRES_HOST, POSTGRES_PORT,
// POSTGRES_USERNAME and POSTGRES_PASSWORD variables, defaulting to a local
// trust-auth server (127.0.0.1:5432, user postgres).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/store"
)

// Server returns the connection settings of the test server's admin
// database ("postgres").
func Server(tb testing.TB) config.Database {
	tb.Helper()
	port := 5432
	if p := os.Getenv("POSTGRES_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			tb.Fatalf("POSTGRES_PORT=%q: %v", p, err)
		}
		port = n
	}
	return config.Database{
		User:         getenv("POSTGRES_USERNAME", "postgres"),
		Password:     os.Getenv("POSTGRES_PASSWORD"),
		Host:         getenv("POSTGRES_HOST", "127.0.0.1"),
		Port:         port,
		Name:         "postgres",
		SSLMode:      config.SSLDisable,
		MaxConns:     20,
		DialTimeout:  2 * time.Second,
		QueryTimeout: 30 * time.Second,
		// The production default: the tests run the prepared path.
		PreparedStatements: true,
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// New creates an empty database for this test, drops it when the test
// ends, and returns its connection settings: the server's own, or with
// PGTEST_POOLER=pgbouncer (PoolerVar) a PgBouncer's in front of it.
func New(tb testing.TB) config.Database {
	tb.Helper()
	admin := Server(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "users_test_" + hex.EncodeToString(b[:])

	db := store.Open(admin.Options(), "pgtest")
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database (is PostgreSQL running at %s:%d?): %v", admin.Host, admin.Port, err)
	}
	tb.Cleanup(func() {
		db := store.Open(admin.Options(), "pgtest")
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg := admin
	cfg.Name = name
	switch v := os.Getenv(PoolerVar); v {
	case "":
		return cfg
	case "pgbouncer":
		// PgBouncer's default pool size. Clients still share server
		// sessions: each transaction takes whichever is idle, most
		// recently used first.
		b := StartBouncer(tb, admin, Transaction, 20)
		return b.Database(cfg)
	default:
		tb.Fatalf("%s=%q: the only pooler is pgbouncer", PoolerVar, v)
		return cfg
	}
}

// Open opens cfg and closes it when the test ends.
func Open(tb testing.TB, cfg config.Database) *bun.DB {
	tb.Helper()
	db := store.Open(cfg.Options(), "pgtest")
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// Env returns cfg as the environment variables the service reads.
func Env(cfg config.Database) map[string]string {
	env := map[string]string{
		"POSTGRES_USERNAME":            cfg.User,
		"POSTGRES_PASSWORD":            cfg.Password,
		"POSTGRES_HOST":                cfg.Host,
		"POSTGRES_PORT":                strconv.Itoa(cfg.Port),
		"POSTGRES_DATABASE":            cfg.Name,
		"POSTGRES_SSLMODE":             cfg.SSLMode,
		"POSTGRES_PREPARED_STATEMENTS": strconv.FormatBool(cfg.PreparedStatements),
	}
	if cfg.MigrateHost != "" {
		env["POSTGRES_MIGRATE_HOST"] = cfg.MigrateHost
	}
	if cfg.MigratePort != 0 {
		env["POSTGRES_MIGRATE_PORT"] = strconv.Itoa(cfg.MigratePort)
	}
	return env
}
