// Package migrations holds the database schema as embedded SQL files and
// applies them with bun's migrator.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var sqlFiles embed.FS

// lockKey is the PostgreSQL advisory lock that serialises migration runs.
// A session-level advisory lock dies with its connection, so a run killed
// with SIGKILL never leaves a lock behind (bun's lock table row would).
const lockKey int64 = 0x75736572736d6967 // "usersmig"

// ErrPending means the database is missing embedded migrations.
var ErrPending = errors.New("database schema is not at the latest migration")

// ErrSharedSession means the connection's server session is not its own:
// a pooler in transaction mode hands it to other clients between
// transactions, so a session lock taken on it guards nothing and may be
// left held on a server connection the pooler keeps.
var ErrSharedSession = errors.New("the database session is shared with other clients between transactions " +
	"(a pooler in transaction mode, such as PgBouncer's pool_mode = transaction), so the migration lock would not hold: " +
	"connect migrations to PostgreSQL itself with POSTGRES_MIGRATE_HOST and POSTGRES_MIGRATE_PORT")

// Runner applies, reverts and reports the embedded migrations.
type Runner struct {
	db       *bun.DB
	migrator *migrate.Migrator
	names    []string
	lockPoll time.Duration
}

// New returns a Runner for the embedded migrations.
func New(db *bun.DB) (*Runner, error) {
	return newRunner(db, sqlFiles)
}

func newRunner(db *bun.DB, fsys fs.FS) (*Runner, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	r := &Runner{
		db: db,
		// Record a migration only once it has succeeded; the default marks
		// it first and a failed run would leave it recorded but not applied.
		migrator: migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true)),
		lockPoll: 250 * time.Millisecond,
	}
	for _, m := range ms.Sorted() {
		r.names = append(r.names, m.Name)
	}
	return r, nil
}

// Names lists the embedded migrations, oldest first.
func (r *Runner) Names() []string { return append([]string(nil), r.names...) }

// Up applies every pending migration and returns the names applied.
func (r *Runner) Up(ctx context.Context) ([]string, error) {
	var applied []string
	err := r.locked(ctx, func(ctx context.Context) error {
		group, err := r.migrator.Migrate(ctx)
		if group != nil {
			for _, m := range group.Migrations {
				applied = append(applied, m.Name)
			}
		}
		if err != nil && len(applied) > 0 {
			// The failing one is the last in the group and is not applied.
			applied = applied[:len(applied)-1]
		}
		return err
	})
	if err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	return applied, nil
}

// Down reverts the last group of applied migrations.
func (r *Runner) Down(ctx context.Context) ([]string, error) {
	var reverted []string
	err := r.locked(ctx, func(ctx context.Context) error {
		group, err := r.migrator.Rollback(ctx)
		if group != nil {
			for _, m := range group.Migrations {
				reverted = append(reverted, m.Name)
			}
		}
		return err
	})
	if err != nil {
		return reverted, fmt.Errorf("migrate down: %w", err)
	}
	return reverted, nil
}

// Status is one migration and whether it is applied.
type Status struct {
	Name    string
	Comment string
	Applied bool
}

// Status reports every embedded migration.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	var out []Status
	err := r.locked(ctx, func(ctx context.Context) error {
		ms, err := r.migrator.MigrationsWithStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			out = append(out, Status{Name: m.Name, Comment: m.Comment, Applied: m.IsApplied()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	return out, nil
}

// Current returns nil when every embedded migration is applied and
// ErrPending when one is not. It is one small query, so readiness probes
// can call it.
func (r *Runner) Current(ctx context.Context) error {
	var n int
	err := r.db.QueryRowContext(ctx, "SELECT count(DISTINCT name) FROM bun_migrations WHERE name IN (?)", bun.List(r.names)).Scan(&n)
	if err != nil {
		if isUndefinedTable(err) {
			return ErrPending
		}
		return err
	}
	if n != len(r.names) {
		return ErrPending
	}
	return nil
}

// locked runs fn while holding the advisory lock on a dedicated connection.
func (r *Runner) locked(ctx context.Context, fn func(context.Context) error) error {
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	pid, err := ownSession(ctx, r.db, conn)
	if err != nil {
		return err
	}
	// Poll with pg_try_advisory_lock instead of blocking in
	// pg_advisory_lock: a blocking call would outlast the driver's read
	// timeout while another run holds the lock. The lock is taken only on
	// the session ownSession saw, so it is never left on another's.
	for {
		var got sql.NullBool
		err := conn.QueryRowContext(ctx, "SELECT CASE WHEN pg_backend_pid() = ? THEN pg_try_advisory_lock(?) END", pid, lockKey).Scan(&got)
		if err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if !got.Valid {
			return ErrSharedSession
		}
		if got.Bool {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for migration lock: %w", ctx.Err())
		case <-time.After(r.lockPoll):
		}
	}
	defer func() {
		// A fresh context: the unlock must run even if ctx was cancelled.
		// Should it fail, closing the connection releases the lock anyway.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(uctx, "SELECT pg_advisory_unlock(?)", lockKey)
	}()
	if err := r.migrator.Init(ctx); err != nil {
		return fmt.Errorf("create migration tables: %w", err)
	}
	return fn(ctx)
}

// ownSession returns conn's server process id, or ErrSharedSession if that
// process is not conn's alone. Straight to PostgreSQL a connection is one
// process for its life and no two share one. Through a pooler in
// transaction mode the process is handed on between transactions: a
// second client is then given conn's idle one (PgBouncer reuses the most
// recently released), or conn is given another.
func ownSession(ctx context.Context, db *bun.DB, conn bun.Conn) (int, error) {
	pid := func(c bun.Conn) (int, error) {
		var n int
		if err := c.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&n); err != nil {
			return 0, fmt.Errorf("check the database session: %w", err)
		}
		return n, nil
	}
	mine, err := pid(conn)
	if err != nil {
		return 0, err
	}
	other, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer other.Close()
	theirs, err := pid(other)
	if err != nil {
		return 0, err
	}
	again, err := pid(conn)
	if err != nil {
		return 0, err
	}
	if theirs == mine || again != mine {
		return 0, ErrSharedSession
	}
	return mine, nil
}
