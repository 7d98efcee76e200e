package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), "test", args, env, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"serve without config", map[string]string{}, []string{"serve"}, 2, []string{"POSTGRES_USERNAME", "POSTGRES_HOST", "POSTGRES_DATABASE"}},
		{"default command is serve", map[string]string{}, nil, 2, []string{"POSTGRES_HOST"}},
		{"migrate without config", map[string]string{"POSTGRES_PORT": "x"}, []string{"migrate"}, 2, []string{"POSTGRES_PORT", "POSTGRES_HOST"}},
		{"migrate bad action", nil, []string{"migrate", "sideways"}, 2, []string{"up, down, status"}},
		{"serve extra args", nil, []string{"serve", "now"}, 2, []string{"no arguments"}},
		{"bad sslmode", map[string]string{"POSTGRES_USERNAME": "u", "POSTGRES_HOST": "h", "POSTGRES_DATABASE": "d", "POSTGRES_SSLMODE": "allow", "POSTGRES_PASSWORD": "hunter2"},
			[]string{"serve"}, 2, []string{"POSTGRES_SSLMODE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.env, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not mention %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "hunter2") {
				t.Error("password in the error message")
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := runCLI(t, nil, "version"); code != 0 || out != "test\n" {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, nil, "help"); code != 0 || !strings.Contains(out, "migrate") {
		t.Errorf("help: %d %q", code, out)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			<-stall
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	defer close(stall)
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	if code, _, stderr := runCLI(t, nil, "healthcheck", srv.URL+"/x"); code != 0 {
		t.Errorf("200: exit %d %s", code, stderr)
	}
	// Default URL: 127.0.0.1:$PORT/-/ready.
	if code, _, _ := runCLI(t, map[string]string{"PORT": strconv.Itoa(port)}, "healthcheck"); code != 0 {
		t.Errorf("default URL: exit %d", code)
	}
	// PORT is read as serve reads it: a value serve refuses fails the check.
	if code, _, stderr := runCLI(t, map[string]string{"PORT": "http"}, "healthcheck"); code != 1 || !strings.Contains(stderr, "PORT: not a valid int") {
		t.Errorf("bad PORT: exit %d %q", code, stderr)
	}
	status = http.StatusServiceUnavailable
	if code, _, stderr := runCLI(t, nil, "healthcheck", srv.URL+"/x"); code != 1 || !strings.Contains(stderr, "503") {
		t.Errorf("503: exit %d %q", code, stderr)
	}
	if code, _, _ := runCLI(t, nil, "healthcheck", "http://127.0.0.1:1/"); code != 1 {
		t.Errorf("refused: exit %d", code)
	}
	start := time.Now()
	if code, _, _ := runCLI(t, nil, "healthcheck", srv.URL+"/stall"); code != 1 {
		t.Errorf("stalled server: exit %d", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("healthcheck waited %v on a stalled server; its limit is 2s", d)
	}
}

func TestMigrateCommand(t *testing.T) {
	env := pgtest.Env(pgtest.New(t))
	if code, _, stderr := runCLI(t, env, "migrate", "status"); code != 0 {
		t.Fatalf("status: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "migrate"); code != 0 || !strings.Contains(stderr, "migration applied") {
		t.Fatalf("migrate: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != 0 || strings.Contains(stderr, "migration applied") {
		t.Fatalf("second migrate up is not a no-op: %d %s", code, stderr)
	}
	code, out, _ := runCLI(t, env, "migrate", "status")
	if code != 0 || !strings.Contains(out, "applied") || strings.Contains(out, "pending") {
		t.Fatalf("status after up: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, env, "migrate", "down"); code != 0 {
		t.Fatalf("down: %d", code)
	}
	if _, out, _ := runCLI(t, env, "migrate", "status"); !strings.Contains(out, "pending") {
		t.Fatalf("status after down: %q", out)
	}
	if code, _, _ := runCLI(t, pgtest.Env(testenv.Unreachable(t)), "migrate"); code != 1 {
		t.Fatalf("unreachable database: exit %d, want 1", code)
	}
}

// TestMigrateThroughPooler: `users migrate up` with POSTGRES_HOST at a
// PgBouncer in transaction mode exits 1 with a message that names the
// way out and applies nothing; with POSTGRES_MIGRATE_HOST and _PORT at
// PostgreSQL itself it migrates.
func TestMigrateThroughPooler(t *testing.T) {
	direct := pgtest.New(t)
	b := pgtest.StartBouncer(t, pgtest.Server(t), pgtest.Transaction, 2)
	pooled := b.Database(direct)
	env := pgtest.Env(pooled)
	delete(env, "POSTGRES_MIGRATE_HOST")
	delete(env, "POSTGRES_MIGRATE_PORT")
	code, _, stderr := runCLI(t, env, "migrate", "up")
	if code != 1 || !strings.Contains(stderr, "pool_mode = transaction") || !strings.Contains(stderr, "POSTGRES_MIGRATE_HOST") {
		t.Fatalf("migrate up through PgBouncer: exit %d, want 1 and a message naming POSTGRES_MIGRATE_HOST:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "migration applied") {
		t.Fatalf("a refused run applied migrations:\n%s", stderr)
	}
	var n int
	if err := pgtest.Open(t, direct).QueryRowContext(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused run left %d tables (%v)", n, err)
	}

	code, _, stderr = runCLI(t, pgtest.Env(pooled), "migrate", "up")
	if code != 0 || !strings.Contains(stderr, "migration applied") {
		t.Fatalf("migrate up with POSTGRES_MIGRATE_HOST: exit %d\n%s", code, stderr)
	}
	if err := pgtest.Open(t, pooled).QueryRowContext(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatalf("the migrated schema, read through PgBouncer: %v", err)
	}
}

type process struct {
	cmd  *exec.Cmd
	url  string
	logs *testenv.Logs
	done chan error
}

func startServe(t *testing.T, bin string, env map[string]string) *process {
	t.Helper()
	port := loopback.FreePort(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PORT=" + strconv.Itoa(port)}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: new(testenv.Logs), done: make(chan error, 1)}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s; logs:\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("process did not exit; logs:\n%s", p.logs)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestGracefulShutdown sends SIGTERM while a request is in flight (its
// body half sent): readiness turns 503 at once, new requests are still
// served during the drain delay, the in-flight request completes with
// 201, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	bin := testenv.Binary(t)
	_, cfg := testenv.DB(t)
	env := pgtest.Env(cfg)
	env["SHUTDOWN_DRAIN_DELAY"] = "1s"
	p := startServe(t, bin, env)

	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"username":"inflight","email":"inflight@example.com"}`
	head := fmt.Sprintf("POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := io.WriteString(conn, head+body[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the server start reading the body

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns 503 at once while the server still answers.
	deadline := time.Now().Add(900 * time.Millisecond)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			t.Fatalf("server stopped answering during the drain delay: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness still %d after SIGTERM", resp.StatusCode)
		}
	}
	if resp, err := http.Get(p.url + "/user"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /user during the drain delay: %v %v", resp, err)
	}

	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request: %v; logs:\n%s", err, p.logs)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("in-flight request got %d", resp.StatusCode)
	}
	_ = conn.Close()
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code %d; logs:\n%s", code, p.logs)
	}
	db := pgtest.Open(t, cfg)
	if testenv.CountUsers(t, db) != 1 {
		t.Fatal("the in-flight user was not stored")
	}
}

// TestSecondSignalExitsAtOnce: an operator's second Ctrl-C does not wait
// for a long drain.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	bin := testenv.Binary(t)
	_, cfg := testenv.DB(t)
	env := pgtest.Env(cfg)
	env["SHUTDOWN_DRAIN_DELAY"] = "60s"
	p := startServe(t, bin, env)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logs.String(), `"msg":"draining"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no drain after SIGTERM; logs:\n%s", p.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t); code != 1 {
		t.Fatalf("exit code %d after a second signal, want 1", code)
	}
}
