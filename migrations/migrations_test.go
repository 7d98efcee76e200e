package migrations

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/pkg/config"
)

func tableExists(t *testing.T, db *bun.DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRowContext(context.Background(), "SELECT to_regclass(?) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func appliedCount(t *testing.T, db *bun.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM bun_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newTestRunner(t *testing.T, db *bun.DB) *Runner {
	t.Helper()
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.New(t))
	r := newTestRunner(t, db)

	if err := r.Current(ctx); !errors.Is(err, ErrPending) {
		t.Fatalf("Current on an empty database = %v, want ErrPending", err)
	}
	applied, err := r.Up(ctx)
	if err != nil || len(applied) != len(r.Names()) {
		t.Fatalf("Up = %v, %v; want all of %v", applied, err, r.Names())
	}
	if !tableExists(t, db, "users") || r.Current(ctx) != nil {
		t.Fatal("after Up: users table missing or schema not current")
	}

	again, err := r.Up(ctx)
	if err != nil || len(again) != 0 || appliedCount(t, db) != len(r.Names()) {
		t.Fatalf("second Up = %v, %v; want a no-op", again, err)
	}

	reverted, err := r.Down(ctx)
	if err != nil || len(reverted) == 0 {
		t.Fatalf("Down = %v, %v", reverted, err)
	}
	if err := r.Current(ctx); !errors.Is(err, ErrPending) {
		t.Fatalf("Current after Down = %v, want ErrPending", err)
	}
	if _, err := r.Up(ctx); err != nil || r.Current(ctx) != nil || !tableExists(t, db, "users") {
		t.Fatalf("Up after Down: %v", err)
	}

	st, err := r.Status(ctx)
	if err != nil || len(st) != len(r.Names()) {
		t.Fatalf("Status = %v, %v", st, err)
	}
	for _, s := range st {
		if !s.Applied {
			t.Errorf("%s not applied", s.Name)
		}
	}
}

func TestConcurrentRunsSerialise(t *testing.T) {
	ctx := context.Background()
	cfg := pgtest.New(t)
	const runs = 4
	var wg sync.WaitGroup
	errs := make([]error, runs)
	total := make([]int, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate pools, as separate processes would have.
			r := newTestRunner(t, pgtest.Open(t, cfg))
			applied, err := r.Up(ctx)
			errs[i], total[i] = err, len(applied)
		}()
	}
	wg.Wait()
	sum := 0
	for i := range runs {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
		}
		sum += total[i]
	}
	db := pgtest.Open(t, cfg)
	if n := len(newTestRunner(t, db).Names()); sum != n || appliedCount(t, db) != n {
		t.Fatalf("runs applied %d migrations in all and recorded %d; want each of %d exactly once", sum, appliedCount(t, db), n)
	}
}

func TestFailedMigrationIsNotRecorded(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.New(t))
	fsys := withExtra(t, "20991231000000_broken.tx.up.sql", "CREATE TABLE half_done (id int);\n--bun:split\nSELECT no_such_function();\n")
	r, err := newRunner(db, fsys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Up(ctx); err == nil {
		t.Fatal("Up with a broken migration succeeded")
	}
	if tableExists(t, db, "half_done") {
		t.Error("the broken migration's first statement was committed; it must run in one transaction")
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM bun_migrations WHERE name = '20991231000000'").Scan(&n); err != nil || n != 0 {
		t.Errorf("broken migration recorded as applied (%d, %v)", n, err)
	}
	if err := r.Current(ctx); !errors.Is(err, ErrPending) {
		t.Errorf("Current = %v, want ErrPending", err)
	}
}

// withExtra returns the embedded migrations plus one more file.
func withExtra(t *testing.T, name, sql string) fs.FS {
	t.Helper()
	m := fstest.MapFS{name: {Data: []byte(sql)}}
	entries, err := fs.ReadDir(sqlFiles, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(sqlFiles, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = &fstest.MapFile{Data: b}
	}
	return m
}

const slowMigration = "20991231000000_slow.tx.up.sql"

// TestKilledRunLeavesNothingBehind kills a migration run with SIGKILL in
// the middle of a migration, then checks that the next run takes the
// lock, applies everything and records the interrupted migration once.
func TestKilledRunLeavesNothingBehind(t *testing.T) {
	cfg := pgtest.New(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMigrateSlowly$")
	cmd.Env = append(os.Environ(), "MIGRATIONS_HELPER=1", "MIGRATIONS_HELPER_DB="+cfg.Name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	admin := pgtest.Open(t, pgtest.Server(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		var n int
		err := admin.QueryRowContext(ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE datname = ? AND query LIKE '%pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()", cfg.Name).Scan(&n)
		if err != nil {
			t.Fatalf("waiting for the slow migration to start: %v", err)
		}
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The next run must not be blocked by anything the killed one held.
	fast := withExtra(t, "20991231000000_slow.tx.up.sql", "CREATE TABLE IF NOT EXISTS slow_marker (id int);\n")
	db, err := Open(ctx, cfg.Options(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := newRunner(db, fast)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Up(ctx); err != nil {
		t.Fatalf("run after a killed run: %v", err)
	}
	if err := r.Current(ctx); err != nil {
		t.Fatalf("Current = %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM bun_migrations WHERE name = '20991231000000'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("interrupted migration recorded %d times (%v), want once", n, err)
	}
}

// TestHelperMigrateSlowly is the process TestKilledRunLeavesNothingBehind
// kills; it does nothing unless started by it.
func TestHelperMigrateSlowly(t *testing.T) {
	if os.Getenv("MIGRATIONS_HELPER") != "1" {
		return
	}
	cfg := pgtest.Server(t)
	cfg.Name = os.Getenv("MIGRATIONS_HELPER_DB")
	slow := withExtra(t, slowMigration, "CREATE TABLE slow_marker (id int);\n--bun:split\nSELECT pg_sleep(120);\n")
	run(t, cfg, slow)
}

func run(t *testing.T, cfg config.Database, fsys fs.FS) {
	ctx := context.Background()
	db, err := Open(ctx, cfg.Options(), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(db, fsys)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Up(ctx)
	t.Fatalf("the slow run was meant to be killed, but ended: %v", err)
}

// TestOpenChecksClient: every session of a migration pool checks for its
// client, including ones opened after the first (one pool, so each
// connection must set it up itself), and an unreachable server fails Open.
func TestOpenChecksClient(t *testing.T) {
	ctx := context.Background()
	cfg := pgtest.New(t)
	db, err := Open(ctx, cfg.Options(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var conns []bun.Conn
	for range 3 {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		var got string
		if err := conn.QueryRowContext(ctx, "SHOW client_connection_check_interval").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != "1s" {
			t.Fatalf("session %d: client_connection_check_interval = %q, want 1s", len(conns), got)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}

	cfg.Port, cfg.DialTimeout = 1, 500*time.Millisecond
	if db, err := Open(ctx, cfg.Options(), time.Minute); err == nil {
		_ = db.Close()
		t.Fatal("Open succeeded against a closed port")
	}
}

// TestPooledSessionRefused: through a real PgBouncer in transaction mode a
// run is refused with ErrSharedSession before it takes the lock or creates
// anything; in session mode, where a client keeps its server session, it
// runs. Straight to PostgreSQL is every other test here.
func TestPooledSessionRefused(t *testing.T) {
	for _, tt := range []struct {
		mode    string
		refused bool
	}{
		{pgtest.Transaction, true},
		{pgtest.Session, false},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			direct := pgtest.New(t)
			b := pgtest.StartBouncer(t, pgtest.Server(t), tt.mode, 2)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db, err := Open(ctx, b.Database(direct).Options(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = newTestRunner(t, db).Up(ctx)
			if tt.refused != errors.Is(err, ErrSharedSession) {
				t.Fatalf("Up through PgBouncer in %s mode: %v", tt.mode, err)
			}
			if b.Logins(1) == 0 {
				t.Fatal("nothing connected through PgBouncer")
			}
			check := pgtest.Open(t, direct)
			var locks int
			if err := check.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()").Scan(&locks); err != nil {
				t.Fatal(err)
			}
			if !tt.refused {
				if err != nil || !tableExists(t, check, "users") {
					t.Fatalf("Up in session mode: %v", err)
				}
				return
			}
			if locks != 0 || tableExists(t, check, "bun_migrations") || tableExists(t, check, "users") {
				t.Errorf("a refused run left %d advisory locks, bun_migrations %v, users %v",
					locks, tableExists(t, check, "bun_migrations"), tableExists(t, check, "users"))
			}
		})
	}
}
