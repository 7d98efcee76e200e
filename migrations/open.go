package migrations

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/pkg/store"
)

// checkClient has a session check every second that its client is still
// there, where the server can (PostgreSQL 14+; current_setting finds no
// such parameter before, and set_config is then not called): a migration
// killed mid-statement (a Job's pod deleted, SIGKILL) then rolls back at
// once instead of running on and holding its locks against the next run.
const checkClient = "SELECT set_config('client_connection_check_interval', '1s', false) " +
	"WHERE current_setting('client_connection_check_interval', true) IS NOT NULL"

// Open connects to the database for a migration run that may last up to
// timeout, with every session checking for its client (checkClient).
func Open(ctx context.Context, o store.Options, timeout time.Duration) (*bun.DB, error) {
	o.QueryTimeout = max(o.QueryTimeout, timeout)
	o.Setup = checkClient
	// A Runner holds one connection for its lock and needs another to
	// check that session and to migrate.
	o.MaxConns = max(o.MaxConns, 2)
	db := store.Open(o, "users-migrate")
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return db, nil
}
