package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// These benchmarks measure the store alone against real PostgreSQL, and
// set its queries beside the alternatives that were weighed for them, so
// the choice can be re-checked with figures:
//
//	go test -run '^$' -bench . -benchmem ./pkg/store/
//
// "store" is the Store method as shipped: $n parameters, each statement
// prepared once per connection by Open's connections (conn.go). "builder"
// is bun's query builder over a model, which the store used before (a 4 kB
// query buffer and reflection per call). "prepared" is an explicit
// database/sql prepared statement: the floor the shipped form is held to.
const (
	getSQL    = "SELECT id, username, email, created_at FROM users WHERE id = "
	insertSQL = "INSERT INTO users (username, email) VALUES "
)

// builderRow maps the table for the bun query builder variants.
type builderRow struct {
	bun.BaseModel `bun:"table:users"`

	ID        int64     `bun:"id,pk,autoincrement"`
	Username  string    `bun:"username"`
	Email     string    `bun:"email"`
	CreatedAt time.Time `bun:"created_at"`
}

// benchTimeout is the store's timeout in the benchmarks: non-zero as in
// production, so its cost is measured.
const benchTimeout = 4 * time.Second

func benchDB(b *testing.B, seed int) *bun.DB {
	b.Helper()
	db, _ := testenv.DB(b)
	// One connection, so the PostgreSQL backend serving every query is
	// known and its CPU time can be read (see cpuPerOp).
	db.SetMaxOpenConns(1)
	if seed > 0 {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `INSERT INTO users (username, email)
			SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, ?) AS i`, seed); err != nil {
			b.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "ANALYZE users"); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// cpuPerOp reports, besides wall time (which on a shared machine mostly
// measures the queue for the CPU), the CPU time each operation cost this
// process (go-cpu-ns/op) and the PostgreSQL backend (pg-cpu-ns/op). Call
// it after b.ResetTimer or before b.Loop; it reads /proc, so it needs the
// server on this host.
func cpuPerOp(b *testing.B, db *bun.DB) {
	b.Helper()
	var pid int
	if err := db.QueryRowContext(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	goStart, pgStart := selfCPU(b), procCPU(b, pid)
	b.Cleanup(func() {
		if b.N == 0 {
			return
		}
		n := float64(b.N)
		b.ReportMetric(float64(selfCPU(b)-goStart)/n, "go-cpu-ns/op")
		b.ReportMetric(float64(procCPU(b, pid)-pgStart)/n, "pg-cpu-ns/op")
	})
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is utime+stime of process pid, from /proc/pid/stat (fields 14
// and 15, in clock ticks of 10ms on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatalf("read the PostgreSQL backend's CPU time (is the server local?): %v", err)
	}
	// The command name (field 2) may hold spaces; count from after it.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func prepare(b *testing.B, db *bun.DB, query string) *sql.Stmt {
	b.Helper()
	st, err := db.DB.PrepareContext(context.Background(), query)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b, 10_000)
	s := store.New(db, benchTimeout)
	const id = 5000
	variants := []struct {
		name string
		get  func() (user.User, error)
	}{
		{"store", func() (user.User, error) { return s.Get(ctx, id) }},
		{"builder", func() (user.User, error) {
			var r builderRow
			err := db.NewSelect().Model(&r).Where("id = ?", id).Scan(ctx)
			return user.User{ID: r.ID, Username: r.Username, Email: r.Email, CreatedAt: r.CreatedAt}, err
		}},
		{"prepared", func() func() (user.User, error) {
			st := prepare(b, db, getSQL+"$1")
			return func() (user.User, error) {
				var u user.User
				err := st.QueryRowContext(ctx, id).Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
				return u, err
			}
		}()},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuPerOp(b, db)
			for b.Loop() {
				u, err := v.get()
				if err != nil || u.ID != id || u.Username != "user5000" {
					b.Fatalf("got %+v, %v", u, err)
				}
			}
		})
	}
}

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b, 0)
	s := store.New(db, benchTimeout)
	var seq int
	next := func() user.New {
		seq++
		n := strconv.Itoa(seq)
		return user.New{Username: "bench" + n, Email: "bench" + n + "@example.com"}
	}
	variants := []struct {
		name   string
		create func(user.New) (user.User, error)
	}{
		{"store", func(n user.New) (user.User, error) { return s.Create(ctx, n) }},
		{"builder", func(n user.New) (user.User, error) {
			r := builderRow{Username: n.Username, Email: n.Email}
			_, err := db.NewInsert().Model(&r).Column("username", "email").Returning("id, created_at").Exec(ctx)
			return user.User{ID: r.ID, Username: r.Username, Email: r.Email, CreatedAt: r.CreatedAt}, err
		}},
		{"prepared", func() func(user.New) (user.User, error) {
			st := prepare(b, db, insertSQL+"($1, $2) RETURNING id, created_at")
			return func(n user.New) (user.User, error) {
				u := user.User{Username: n.Username, Email: n.Email}
				err := st.QueryRowContext(ctx, n.Username, n.Email).Scan(&u.ID, &u.CreatedAt)
				return u, err
			}
		}()},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuPerOp(b, db)
			for b.Loop() {
				u, err := v.create(next())
				if err != nil || u.ID == 0 || u.CreatedAt.IsZero() {
					b.Fatalf("got %+v, %v", u, err)
				}
			}
		})
	}
}

func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{100, 10_000} {
		b.Run("users="+strconv.Itoa(n), func(b *testing.B) {
			db := benchDB(b, n)
			s := store.New(db, benchTimeout)
			b.ReportAllocs()
			cpuPerOp(b, db)
			for b.Loop() {
				rows := 0
				err := s.List(ctx, 0, 0, func(*user.User) error { rows++; return nil })
				if err != nil || rows != n {
					b.Fatalf("%d rows, %v", rows, err)
				}
			}
		})
	}
}
