//go:build slow

package reliability

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/config"
)

// instance is one running `users serve` process.
type instance struct {
	name string
	base string
	cmd  *exec.Cmd
	logs *testenv.Logs
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done closes
}

// startInstance runs bin serve against database cfg and waits until it
// is ready.
func startInstance(t *testing.T, bin, name string, cfg config.Database, env map[string]string) *instance {
	t.Helper()
	port := strconv.Itoa(loopback.FreePort(t))
	vars := pgtest.Env(cfg)
	vars["PORT"] = port
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	in := &instance{name: name, base: "http://127.0.0.1:" + port, cmd: cmd, logs: &testenv.Logs{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = in.logs, in.logs
	dumpOnFailure(t, name, in.logs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.err = cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(func() { in.terminate(t, 30*time.Second) })
	waitReady(t, in.base, 10*time.Second)
	return in
}

// terminate sends SIGTERM and waits for the exit; after within it kills.
// It returns how long the process took to exit.
func (in *instance) terminate(t *testing.T, within time.Duration) time.Duration {
	select {
	case <-in.done:
		return 0
	default:
	}
	start := time.Now()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
		return time.Since(start)
	case <-time.After(within):
		t.Errorf("%s did not exit within %v of SIGTERM; killing it", in.name, within)
		_ = in.cmd.Process.Kill()
		<-in.done
		return time.Since(start)
	}
}

// backend is one upstream of the round-robin proxy.
type backend struct {
	name     string
	base     string
	routable atomic.Bool
}

// rrProxy is a small round-robin reverse proxy whose endpoints follow
// readiness, as a Kubernetes Service's do. With retryRefused it also makes
// the one retry that is always safe, as Knative's activator and
// queue-proxy do: a connection that was refused carried nothing, so the
// request goes to another backend. Nothing else is retried (a POST that
// reached a backend may have been written, and resending it could
// duplicate the user); net/http's Transport itself resends only requests
// it never wrote. Without retryRefused it is kube-proxy: a request sent to
// a backend that has stopped listening fails.
type rrProxy struct {
	transport    *http.Transport
	retryRefused bool

	mu       sync.Mutex
	backends []*backend
	next     int

	retried atomic.Int64 // refused connections sent elsewhere
	failed  atomic.Int64 // answered 502

	stopPoll context.CancelFunc
	pollDone chan struct{}
}

func newRRProxy(retryRefused bool) *rrProxy {
	ctx, cancel := context.WithCancel(context.Background())
	p := &rrProxy{
		transport:    &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
		retryRefused: retryRefused,
		stopPoll:     cancel,
		pollDone:     make(chan struct{}),
	}
	go p.poll(ctx)
	return p
}

// poll follows readiness every 100 ms, as an endpoints controller does
// (more often than Kubernetes' default period, so the drain delay the
// test gives covers it with room to spare).
func (p *rrProxy) poll(ctx context.Context) {
	defer close(p.pollDone)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		bs := append([]*backend(nil), p.backends...)
		p.mu.Unlock()
		for _, b := range bs {
			s, _ := getStatus(ctx, c, b.base+"/-/ready")
			b.routable.Store(s == http.StatusOK)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *rrProxy) close() {
	p.stopPoll()
	<-p.pollDone
	p.transport.CloseIdleConnections()
}

func (p *rrProxy) add(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends = append(p.backends, b)
}

func (p *rrProxy) remove(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.backends {
		if b.name == name {
			p.backends = append(p.backends[:i], p.backends[i+1:]...)
			return
		}
	}
}

// routable lists the backends to try, round-robin from the next one.
func (p *rrProxy) routable() []*backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*backend
	n := len(p.backends)
	for i := range n {
		b := p.backends[(p.next+i)%n]
		if b.routable.Load() {
			out = append(out, b)
		}
	}
	p.next++
	return out
}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var lastErr error
	for i, b := range p.routable() {
		if i > 0 {
			p.retried.Add(1)
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, b.base+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := p.transport.RoundTrip(out)
		if err != nil {
			lastErr = err
			if p.retryRefused && isRefused(err) {
				continue
			}
			break
		}
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		_ = resp.Body.Close()
		return
	}
	p.failed.Add(1)
	http.Error(w, fmt.Sprintf("proxy: no backend answered: %v", lastErr), http.StatusBadGateway)
}

// waitRoutable waits until the proxy routes to b.
func waitRoutable(t *testing.T, b *backend, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !b.routable.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not route to %s within %v", b.name, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowRollingRestart runs two instances of the real binary behind a
// round-robin proxy under a steady load of reads and writes, and replaces
// each in turn: SIGTERM (readiness turns 503, the proxy stops routing to
// it, in-flight requests finish during the drain delay), exit, and a new
// process. No request may fail and every 201 must be in the database,
// both behind a proxy that retries refused connections (Knative) and
// behind one that does not (a plain Service), where only the drain delay
// keeps requests away from a closed listener.
func TestSlowRollingRestart(t *testing.T) {
	bin := testenv.Binary(t)
	for _, tc := range []struct {
		name         string
		retryRefused bool
	}{
		{"retry refused (Knative)", true},
		{"no retry (Service)", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testRollingRestart(t, bin, tc.retryRefused) })
	}
}

func testRollingRestart(t *testing.T, bin string, retryRefused bool) {
	db, cfg := testenv.DB(t)
	env := map[string]string{"SHUTDOWN_DRAIN_DELAY": "1s", "SHUTDOWN_TIMEOUT": "10s"}

	proxy := newRRProxy(retryRefused)
	front := httptest.NewServer(proxy)
	t.Cleanup(func() {
		front.Close()
		proxy.close()
	})

	start := func(name string) *instance {
		in := startInstance(t, bin, name, cfg, env)
		b := &backend{name: name, base: in.base}
		proxy.add(b)
		waitRoutable(t, b, 5*time.Second)
		return in
	}
	a := start("a")
	b := start("b")

	client := &http.Client{Timeout: 30 * time.Second}
	ld := startLoad(front.URL, 8, client, 90*time.Second)
	time.Sleep(time.Second)

	for i, old := range []*instance{a, b} {
		took := old.terminate(t, 15*time.Second)
		if old.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want status 0", old.name, old.err)
		}
		t.Logf("%s exited %v after SIGTERM", old.name, took.Round(time.Millisecond))
		proxy.remove(old.name)
		start(old.name + strconv.Itoa(i+2))
		time.Sleep(time.Second)
	}

	rs := ld.stop()
	t.Logf("%d requests through the proxy: %s; refused connections retried elsewhere: %d", len(rs), summary(rs), proxy.retried.Load())
	failed := 0
	for _, r := range rs {
		if r.err != nil || (r.status != http.StatusOK && r.status != http.StatusCreated) {
			failed++
			if failed <= 20 {
				t.Errorf("%s at %v: status %d %s %v", r.op, r.start.Format("15:04:05.000"), r.status, r.body, r.err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed during the rolling restart, want 0", failed, len(rs))
	}
	acked := created(rs)
	if len(acked) == 0 {
		t.Error("no create succeeded: the load did not run")
	}
	if missing := missingIDs(t, db, acked); len(missing) > 0 {
		t.Errorf("%d of %d acknowledged creates are not in the database: ids %v", len(missing), len(acked), missing)
	}
}
