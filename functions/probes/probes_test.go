package probes_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/migrations"
	"github.com/example/users/pkg/app"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func start(t *testing.T, env map[string]string) *httptest.Server {
	t.Helper()
	fn := app.New(io.Discard)
	if err := fn.Start(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fn)
	t.Cleanup(func() { srv.Close(); _ = fn.Stop(context.Background()) })
	return srv
}

func TestProbes(t *testing.T) {
	_, migrated := testenv.DB(t)
	empty := pgtest.New(t)
	tests := []struct {
		name      string
		env       map[string]string
		readiness int
		detail    string
	}{
		{"ready", pgtest.Env(migrated), 200, ""},
		{"database down", pgtest.Env(testenv.Unreachable(t)), 503, "database unreachable"},
		{"schema not migrated", pgtest.Env(empty), 503, "database schema is not at the latest migration; run `users migrate up`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := start(t, tt.env)
			// Liveness never depends on the database.
			for _, p := range app.LivenessPaths() {
				if code, body := get(t, srv.URL+p); code != 200 || body != "{}\n" {
					t.Errorf("%s = %d %q, want 200 {}", p, code, body)
				}
			}
			for _, p := range app.ReadinessPaths() {
				resp, err := http.Get(srv.URL + p)
				if err != nil {
					t.Fatal(err)
				}
				if tt.readiness == 200 {
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 || string(b) != "{}\n" {
						t.Errorf("%s = %d %q, want 200 {}", p, resp.StatusCode, b)
					}
					continue
				}
				if pr := testenv.ReadProblem(t, resp, tt.readiness); pr.Detail != tt.detail {
					t.Errorf("%s detail = %q, want %q", p, pr.Detail, tt.detail)
				}
			}
		})
	}
}

// TestReadinessFollowsTheSchema: readiness is cached for at most a second,
// so it turns ready soon after migrations are applied, without a restart.
func TestReadinessFollowsTheSchema(t *testing.T) {
	cfg := pgtest.New(t)
	srv := start(t, pgtest.Env(cfg))
	if code, _ := get(t, srv.URL+"/-/ready"); code != 503 {
		t.Fatalf("ready before migrating: %d", code)
	}
	r, err := migrations.New(pgtest.Open(t, cfg.Migration()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, srv.URL+"/-/ready")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 5s after migrating", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDrainTurnsReadinessOff(t *testing.T) {
	srv, _, fn := testenv.Service(t, nil)
	if code, _ := get(t, srv.URL+"/-/ready"); code != 200 {
		t.Fatalf("ready = %d", code)
	}
	fn.Drain()
	resp, err := http.Get(srv.URL + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	if p := testenv.ReadProblem(t, resp, 503); p.Detail != "shutting down" {
		t.Errorf("detail %q", p.Detail)
	}
	if code, _ := get(t, srv.URL+"/-/healthy"); code != 200 {
		t.Errorf("liveness while draining = %d, want 200", code)
	}
	if ok, _ := fn.Ready(context.Background()); ok {
		t.Error("Ready() true while draining")
	}
	// Draining does not stop serving.
	if code, _ := get(t, srv.URL+"/user"); code != 200 {
		t.Errorf("GET /user while draining = %d", code)
	}
}
