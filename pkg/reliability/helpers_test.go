// Package reliability holds black-box tests of the whole service: hostile
// input, database faults, rolling restarts and concurrent writes. It has
// no code of its own; the tests drive the composed app or the real binary
// over HTTP and check the database directly. The slow ones are behind the
// build tag "slow" and named TestSlow…; `.ci/slow` runs them.
package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/server"
)

// dumpOnFailure prints a server's log only when the test fails, so a
// failure comes with the server's side of the story.
func dumpOnFailure(t *testing.T, name string, l interface{ String() string }) {
	t.Cleanup(func() {
		if t.Failed() {
			s := l.String()
			if len(s) > 64<<10 {
				s = "…" + s[len(s)-64<<10:]
			}
			t.Logf("%s log:\n%s", name, s)
		}
	})
}

// serveApp starts the composed app for database cfg behind the
// production http.Server settings (server.New: header limits, timeouts)
// on a loopback port, and returns its base URL. env overrides or adds
// configuration variables.
func serveApp(t *testing.T, cfg config.Database, env map[string]string) (string, *app.Function) {
	t.Helper()
	base, fn, _ := serveAppLogs(t, cfg, env)
	return base, fn
}

// serveAppLogs is serveApp, and also returns what the service logs.
func serveAppLogs(t *testing.T, cfg config.Database, env map[string]string) (string, *app.Function, *testenv.Logs) {
	t.Helper()
	vars := pgtest.Env(cfg)
	for k, v := range env {
		vars[k] = v
	}
	c, err := config.Load(vars)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Logs{}
	dumpOnFailure(t, "service", logs)
	fn := app.New(logs)
	if err := fn.StartConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Inside server.New, so the production http.Server still answers what
	// never reaches a handler (oversized headers, malformed requests), and
	// everything that does is checked against api/openapi.yaml.
	srv := server.New(testenv.OpenAPI(t, fn), fn.Logger())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		_ = fn.Stop(context.Background())
	})
	return "http://" + ln.Addr().String(), fn, logs
}

// dbRow is one users row as stored.
type dbRow struct {
	ID        int64
	Username  string
	Email     string
	CreatedAt time.Time
}

// snapshot reads the whole users table in id order, straight from the
// database (never through the service under test).
func snapshot(t *testing.T, db *bun.DB) []dbRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT id, username, email, created_at FROM users ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []dbRow
	for rows.Next() {
		var r dbRow
		if err := rows.Scan(&r.ID, &r.Username, &r.Email, &r.CreatedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// createdUser is the 201 answer to POST /user.
type createdUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

// postUser sends one create and returns the status and body.
func postUser(ctx context.Context, c *http.Client, base, username, email string) (int, []byte, error) {
	body, _ := json.Marshal(map[string]string{"username": username, "email": email})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/user", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mustCreate creates a user through the API and fails the test otherwise.
func mustCreate(t *testing.T, c *http.Client, base, username, email string) createdUser {
	t.Helper()
	status, b, err := postUser(context.Background(), c, base, username, email)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create %s: %d %s %v", username, status, b, err)
	}
	var u createdUser
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	return u
}
