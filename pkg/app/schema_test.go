package app_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/migrations"
	"github.com/example/users/pkg/app"
)

// schemaDetail is what a client is told when the schema is missing.
const schemaDetail = "the database schema is not migrated; run `users migrate up`"

// TestSchemaNotMigrated sends a request to every route that touches the
// database while the database answers but its schema is not what this
// version's queries need. Each must answer 503 with Retry-After and a
// problem saying the schema is not migrated: the request is not at fault,
// and it will succeed once `users migrate up` has run. Nothing may be
// written, in particular no event key without its user.
func TestSchemaNotMigrated(t *testing.T) {
	const userJSON = `{"username":"alice","email":"alice@example.com"}`
	routes := []struct {
		name, method, path string
		header             map[string]string
		body               string
	}{
		{"list", http.MethodGet, "/user", nil, ""},
		{"list page", http.MethodGet, "/user?limit=10", nil, ""},
		{"get", http.MethodGet, "/user/1", nil, ""},
		{"create", http.MethodPost, "/user", map[string]string{"Content-Type": "application/json"}, userJSON},
		{"event binary", http.MethodPost, "/", map[string]string{
			"Ce-Specversion": "1.0", "Ce-Id": "schema-1", "Ce-Source": "/tests/schema",
			"Ce-Type": "com.example.user.create", "Content-Type": "application/json",
		}, userJSON},
		{"event structured", http.MethodPost, "/", map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","id":"schema-2","source":"/tests/schema","type":"com.example.user.create",` +
				`"datacontenttype":"application/json","data":` + userJSON + `}`},
	}
	states := []struct {
		name  string
		setup func(t *testing.T, db *bun.DB) // nil: a fresh, empty database
	}{
		{"no migrations", nil},
		{"users table missing", func(t *testing.T, db *bun.DB) {
			// processed_events stays: an event's key is inserted before
			// its user, so this shows the key is rolled back with it.
			migrate(t, db)
			exec(t, db, "DROP TABLE users CASCADE")
		}},
		{"column missing", func(t *testing.T, db *bun.DB) {
			// As when this version expects a column its migration adds.
			migrate(t, db)
			exec(t, db, "INSERT INTO users (username, email) VALUES ('bob', 'bob@example.com')")
			exec(t, db, "ALTER TABLE users DROP COLUMN email")
		}},
	}
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			cfg := pgtest.New(t)
			db := pgtest.Open(t, cfg)
			if st.setup != nil {
				st.setup(t, db)
			}
			before := rowCounts(t, db)

			fn := app.New(&testenv.Logs{})
			if err := fn.StartConfig(context.Background(), testenv.Config(t, cfg)); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(fn)
			t.Cleanup(func() {
				srv.Close()
				_ = fn.Stop(context.Background())
			})

			for _, rt := range routes {
				t.Run(rt.name, func(t *testing.T) {
					req, err := http.NewRequest(rt.method, srv.URL+rt.path, strings.NewReader(rt.body))
					if err != nil {
						t.Fatal(err)
					}
					for k, v := range rt.header {
						req.Header.Set(k, v)
					}
					resp, err := srv.Client().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					if ra := resp.Header.Get("Retry-After"); ra != "1" {
						t.Errorf("Retry-After = %q, want 1", ra)
					}
					p := testenv.ReadProblem(t, resp, http.StatusServiceUnavailable)
					if p.Type != "urn:problem:users:unavailable" || p.Detail != schemaDetail {
						t.Errorf("problem %+v, want type urn:problem:users:unavailable and detail %q", p, schemaDetail)
					}
				})
			}

			if after := rowCounts(t, db); !maps.Equal(before, after) {
				t.Errorf("rows per table changed from %v to %v", before, after)
			}
		})
	}
}

func migrate(t *testing.T, db *bun.DB) {
	t.Helper()
	r, err := migrations.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func exec(t *testing.T, db *bun.DB, stmt string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// rowCounts returns the number of rows of every table in the public
// schema; a table created by a request would show up too.
func rowCounts(t *testing.T, db *bun.DB) map[string]int {
	t.Helper()
	ctx := context.Background()
	var tables []string
	if err := db.NewSelect().TableExpr("information_schema.tables").Column("table_name").
		Where("table_schema = 'public'").Scan(ctx, &tables); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, name := range tables {
		n, err := db.NewSelect().TableExpr("?", bun.Ident(name)).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = int(n)
	}
	return out
}
