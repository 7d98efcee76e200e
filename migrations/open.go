package migrations

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/store"
)

// Open connects to the database for a migration run that may last up to
// timeout. Where the server supports it (PostgreSQL 14+), the session
// checks every second that its client is still there: a migration killed
// mid-statement (a Job's pod deleted, SIGKILL) then rolls back at once
// instead of running on and holding its locks against the next run.
func Open(ctx context.Context, cfg config.Database, timeout time.Duration) (*bun.DB, error) {
	cfg.QueryTimeout = max(cfg.QueryTimeout, timeout)
	probe := store.Open(cfg, "users-migrate")
	var version int
	err := probe.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version)
	if err != nil {
		_ = probe.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if version < 140000 {
		return probe, nil
	}
	_ = probe.Close()
	return store.Open(cfg, "users-migrate", pgdriver.WithConnParams(map[string]any{
		"client_connection_check_interval": "1s",
	})), nil
}
