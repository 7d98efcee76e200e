package pgtest

import (
	"context"
	"os"
	"testing"
)

// TestNew: New's database is empty and reachable; with PGTEST_POOLER set
// (as .ci/run sets it for the suites it runs through PgBouncer) it is
// reached through PgBouncer and not PostgreSQL's own port, so those
// suites cannot pass by talking to the server directly.
func TestNew(t *testing.T) {
	cfg := New(t)
	server := Server(t)
	var tables int
	if err := Open(t, cfg).QueryRowContext(context.Background(),
		"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("a new database has %d tables (%v)", tables, err)
	}
	pooled := os.Getenv(PoolerVar) != ""
	if through := cfg.Port != server.Port; through != pooled {
		t.Fatalf("%s=%q, but the database is at port %d (the server's is %d)", PoolerVar, os.Getenv(PoolerVar), cfg.Port, server.Port)
	}
	if pooled && (cfg.PreparedStatements || cfg.Migration().Port != server.Port) {
		t.Fatalf("through the pooler: prepared statements %v, migrations at port %d; want off, and the server's %d",
			cfg.PreparedStatements, cfg.Migration().Port, server.Port)
	}
}

// TestBouncerTransactionMode: the PgBouncer StartBouncer starts pools in
// transaction mode: two clients, one after the other, are given the same
// server session, which PostgreSQL never does for two connections.
func TestBouncerTransactionMode(t *testing.T) {
	server := Server(t)
	b := StartBouncer(t, server, Transaction, 1)
	db := Open(t, b.Database(server))
	ctx := context.Background()
	var pids [2]int
	for i := range pids {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.Logins(2); pids[0] != pids[1] || n != 2 {
		t.Fatalf("two clients on server processes %v after %d logins, want one process and 2 logins", pids, n)
	}
}
