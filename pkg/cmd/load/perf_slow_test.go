//go:build slow

// Slow measurements against the built `users` binary in its own process,
// so that its RSS is its own and start-up includes exec. They print
// figures (run with -v to see them) and assert properties, not timings:
//
//	go test -tags slow -run '^TestSlow' -v ./pkg/cmd/load/
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/config"
)

// server is one running `users serve`.
type server struct {
	cmd    *exec.Cmd
	url    string
	logs   string
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, once exited is closed
}

// start execs `users serve` on a free port; the caller waits for it.
func start(t *testing.T, bin string, cfg config.Database) *server {
	t.Helper()
	port := strconv.Itoa(loopback.FreePort(t))
	logs := filepath.Join(t.TempDir(), "serve.log")
	f, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "PORT="+port)
	for k, v := range pgtest.Env(cfg) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, url: "http://127.0.0.1:" + port, logs: logs, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop sends SIGTERM and waits for the process to exit, which it must
// do cleanly.
func (s *server) stop(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		return // already stopped, or died and reported by waitReady
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if s.err != nil {
			t.Errorf("server exit after SIGTERM: %v", s.err)
		}
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("server did not stop within 10s of SIGTERM")
	}
}

// waitReady polls /-/ready as fast as it can and returns when it first
// answers 200: how long after since the process had answered at all, and
// whether it answered anything but 200 before.
func (s *server) waitReady(t *testing.T, since time.Time) (firstAnswer, ready time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := since.Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(s.url + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if firstAnswer == 0 {
				firstAnswer = time.Since(since)
			}
			if resp.StatusCode == http.StatusOK {
				return firstAnswer, time.Since(since)
			}
		}
		select {
		case <-s.exited:
			logs, _ := os.ReadFile(s.logs)
			t.Fatalf("server exited before it was ready: %v\n%s", s.err, logs)
		case <-time.After(200 * time.Microsecond):
		}
	}
	logs, _ := os.ReadFile(s.logs)
	t.Fatalf("not ready within 20s\n%s", logs)
	return 0, 0
}

func TestSlowStartup(t *testing.T) {
	bin := testenv.Binary(t)
	_, cfg := testenv.DB(t)
	const runs = 10
	var ready, answer []time.Duration
	for i := range runs {
		t0 := time.Now()
		s := start(t, bin, cfg)
		a, r := s.waitReady(t, t0)
		s.stop(t)
		t.Logf("run %2d: first answer %6.1fms, first 200 on /-/ready %6.1fms", i+1, msf(a), msf(r))
		ready, answer = append(ready, r), append(answer, a)
	}
	slices.Sort(ready)
	slices.Sort(answer)
	t.Logf("start-up, exec to first 200 on /-/ready over %d runs: min %.1fms, median %.1fms, max %.1fms (target < 100ms)",
		runs, msf(ready[0]), msf(ready[runs/2]), msf(ready[runs-1]))
	t.Logf("exec to first HTTP answer of any status: median %.1fms", msf(answer[runs/2]))
}

func TestSlowStreaming(t *testing.T) {
	const users = 100_000
	bin := testenv.Binary(t)
	db, cfg := testenv.DB(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO users (username, email)
		SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, ?) AS i`, users); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "VACUUM ANALYZE users"); err != nil {
		t.Fatal(err)
	}
	s := start(t, bin, cfg)
	s.waitReady(t, time.Now())
	pid := s.cmd.Process.Pid
	client := &http.Client{Timeout: time.Minute}
	// Warm up: a pooled database connection, the HTTP server's buffers.
	for range 5 {
		resp, err := client.Get(s.url + "/user?limit=10")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond)

	// Reset the peak (VmHWM) to the current RSS, so the peak read after
	// the request is the request's; where the kernel refuses, the
	// sampling below still catches the peak.
	hwmReset := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
	idle := readRSS(pid)
	if idle.rss <= 0 {
		t.Fatalf("cannot read the server's RSS from /proc/%d/status", pid)
	}
	var sampled atomic.Int64
	stopSampling := make(chan struct{})
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for {
			if m := readRSS(pid); m.rss > sampled.Load() {
				sampled.Store(m.rss)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	t0 := time.Now()
	resp, err := client.Get(s.url + "/user")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /user: %s", resp.Status)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	ttfb := time.Since(t0)
	// The ordering check: with the first byte in hand, the server's list
	// query must still be running in PostgreSQL, i.e. the server has not
	// yet read the last row. A server that buffered the whole answer
	// would only send its first byte after the query had finished.
	stillReading, err := listQueryActive(ctx, db, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}

	// Read the rest as a stream, checking every user arrives in id order.
	dec := json.NewDecoder(io.MultiReader(bytes.NewReader(first), resp.Body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		t.Fatalf("body does not start with '[': %v %v", tok, err)
	}
	var n int
	var last int64
	for dec.More() {
		var u struct {
			ID int64 `json:"id"`
		}
		if err := dec.Decode(&u); err != nil {
			t.Fatalf("after %d users: %v", n, err)
		}
		if u.ID <= last {
			t.Fatalf("user %d after %d: not in id order", u.ID, last)
		}
		last = u.ID
		n++
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("body does not end with ']': %v", err)
	}
	total := time.Since(t0)
	close(stopSampling)
	<-sampling
	after := readRSS(pid)

	peak := sampled.Load()
	if hwmReset {
		peak = max(peak, after.hwm)
	}
	growth := peak - idle.rss
	t.Logf("GET /user with %d users: %d users in order, %.1f MB", users, n, float64(dec.InputOffset())/1e6)
	t.Logf("time to first byte %.1fms, to last byte %.1fms; list query still running in PostgreSQL at the first byte: %v",
		msf(ttfb), msf(total), stillReading)
	t.Logf("server RSS: idle %.1f MB, peak %.1f MB, growth %.1f MB (target < 10 MB; VmHWM reset: %v)",
		float64(idle.rss)/1024, float64(peak)/1024, float64(growth)/1024, hwmReset)

	if n != users {
		t.Errorf("GET /user returned %d users, want %d", n, users)
	}
	if !stillReading {
		t.Errorf("the first byte arrived after the server had finished reading the rows: the list is not streamed")
	}
	if growth >= 10*1024 {
		t.Errorf("server RSS grew by %d kB while streaming, want < 10 MB", growth)
	}
}

// listQueryActive reports whether the service's connection to database
// name is running a query on users right now.
func listQueryActive(ctx context.Context, db *bun.DB, name string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = ? AND application_name = 'users' AND state = 'active'
		AND query ILIKE '%from%users%' AND pid <> pg_backend_pid()`, name).Scan(&n)
	if err != nil {
		return false, errors.New("read pg_stat_activity: " + err.Error())
	}
	return n > 0, nil
}

func TestSlowLoad(t *testing.T) {
	bin := testenv.Binary(t)
	_, cfg := testenv.DB(t)
	s := start(t, bin, cfg)
	s.waitReady(t, time.Now())
	var out strings.Builder
	err := run(context.Background(), []string{"-url", s.url, "-c", "4", "-d", "2s", "-pid", strconv.Itoa(s.cmd.Process.Pid)}, &out)
	t.Logf("load -c 4 -d 2s:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
}

func msf(d time.Duration) float64 { return float64(d) / 1e6 }
