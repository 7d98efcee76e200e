package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
)

// TestResponseBodiesExact pins the bytes of every body that carries users,
// as the hand-written encoder produced them: field order, HTML-safe
// escaping and created_at in UTC with trailing zeros of the fraction
// trimmed (RFC 3339, microseconds at most since that is PostgreSQL's
// precision). The database's sessions run in a zone that is not UTC, so
// the service's own conversion is what is checked.
func TestResponseBodiesExact(t *testing.T) {
	db, cfg := testenv.DB(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "ALTER DATABASE "+cfg.Name+" SET timezone TO 'Asia/Kolkata'"); err != nil {
		t.Fatal(err)
	}
	fn := app.New(io.Discard)
	if err := fn.StartConfig(ctx, testenv.Config(t, cfg)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fn)
	t.Cleanup(func() {
		srv.Close()
		_ = fn.Stop(context.Background())
	})

	do := func(method, path, body string, status int) (string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, status)
		}
		return string(b), resp.Header
	}

	created, _ := do("POST", "/user", `{"username":"o.brien","email":"o'brien+x&y@example.com"}`, http.StatusCreated)
	want := regexp.MustCompile(`^\{"id":1,"username":"o\.brien","email":"o'brien\+x\\u0026y@example\.com","created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,5}[1-9])?Z"\}\n$`)
	if !want.MatchString(created) {
		t.Fatalf("POST /user body %q does not match %s", created, want)
	}
	if got, _ := do("GET", "/user/1", "", http.StatusOK); got != created {
		t.Fatalf("GET /user/1 = %q, POST /user answered %q", got, created)
	}

	for _, q := range []string{
		"UPDATE users SET created_at = '2026-11-27 10:00:00.1234+00' WHERE id = 1",
		"INSERT INTO users (username, email, created_at) VALUES ('Zed-9', 'zed@example.com', '2026-11-27 10:00:00+00')",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const (
		u1 = `{"id":1,"username":"o.brien","email":"o'brien+x\u0026y@example.com","created_at":"2026-11-27T10:00:00.1234Z"}`
		u2 = `{"id":2,"username":"Zed-9","email":"zed@example.com","created_at":"2026-11-27T10:00:00Z"}`
	)
	for _, tt := range []struct {
		path, want, link string
	}{
		{"/user/1", u1 + "\n", ""},
		{"/user/2", u2 + "\n", ""},
		{"/user", "[" + u1 + "," + u2 + "]\n", ""},
		{"/user?after=1", "[" + u2 + "]\n", ""},
		{"/user?limit=1", "[" + u1 + "]\n", `</user?after=1&limit=1>; rel="next"`},
		{"/user?limit=2", "[" + u1 + "," + u2 + "]\n", ""},
		{"/user?after=2", "[]\n", ""},
	} {
		got, h := do("GET", tt.path, "", http.StatusOK)
		if got != tt.want {
			t.Errorf("GET %s:\n got %q\nwant %q", tt.path, got, tt.want)
		}
		if l := h.Get("Link"); l != tt.link {
			t.Errorf("GET %s: Link %q, want %q", tt.path, l, tt.link)
		}
	}
}
