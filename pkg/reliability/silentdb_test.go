//go:build slow

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/config"
)

// silentBound is how soon a request must get its 503 once the database
// has gone silent (issue 10), with the service's default timeouts.
const silentBound = 5 * time.Second

// TestSlowSilentDatabase runs the service with its DEFAULT timeouts
// (only the address points at the fault proxy) and checks both sides of
// the query timeout:
//
//   - a healthy but slow stream is never cut: 100,000 users through the
//     proxy with a delay on every chunk, to a client that reads slowly and
//     stops reading for longer than the query timeout, arrive in full;
//   - a silent database is noticed: once the proxy black-holes the
//     database, requests of every kind, more at once than the pool has
//     connections, get a 503 within 5 s of their start, and /-/ready
//     says 503 before the first of them does.
func TestSlowSilentDatabase(t *testing.T) {
	const users = 100_000
	db, cfg := testenv.DB(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO users (username, email)
		SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, ?) AS i`, users); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "VACUUM ANALYZE users"); err != nil {
		t.Fatal(err)
	}
	defaults, err := config.Load(pgtest.Env(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default timeouts: query %v, dial %v, request %v; pool %d connections",
		defaults.Database.QueryTimeout, defaults.Database.DialTimeout, defaults.HTTP.RequestTimeout, defaults.Database.MaxConns)

	proxy := newTCPProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	base, _, logs := serveAppLogs(t, cfg, map[string]string{
		"POSTGRES_HOST": "127.0.0.1",
		"POSTGRES_PORT": proxy.Port(),
	})
	waitReady(t, base, 10*time.Second)

	// The pause is longer than the query timeout: if the timeout counted
	// the time the handler spends writing to the client, or bounded the
	// whole statement, the stream would be cut.
	pause := defaults.Database.QueryTimeout + time.Second
	streamSlowly(t, proxy, logs, base, users, pause, defaults.HTTP.RequestTimeout)

	proxy.Restore()
	waitReady(t, base, 5*time.Second)
	blackholed(t, proxy, base, defaults.Database.MaxConns)

	proxy.Restore()
	waitReady(t, base, 5*time.Second)
	if status, b, err := postUser(ctx, &http.Client{Timeout: 10 * time.Second}, base, "after-silence", "after-silence@example.com"); status != http.StatusCreated {
		t.Errorf("create after the restore: %d %s %v", status, b, err)
	}
}

// streamSlowly lists every user through the proxy with a delay on each
// chunk, reading the answer slowly and pausing once for pause. A cut
// stream is reported, not fatal, so the silent database is tested anyway.
func streamSlowly(t *testing.T, proxy *tcpProxy, logs *testenv.Logs, base string, users int, pause, requestTimeout time.Duration) {
	t.Helper()
	const delay = 500 * time.Microsecond
	proxy.Slow(delay)
	// A small receive buffer makes the pause felt: with the kernel's
	// autotuned buffers the server could write most of the answer into
	// them and never wait for the client.
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(32 << 10)
			}
			return c, err
		},
	}}
	defer client.CloseIdleConnections()

	t0 := time.Now()
	resp, err := client.Get(base + "/user")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /user: %d %s", resp.StatusCode, b)
	}
	ttfb := time.Since(t0)
	sr := &slowReader{r: resp.Body, chunk: 32 << 10, every: time.Millisecond, pauseAt: 1 << 20, pause: pause}
	sr.atPause = func() {
		// The handler must still be running (it logs the request when it
		// returns), that is, held up by the client for the whole pause
		// with rows left to read: the client's socket buffers and the
		// server's (at most a few MB) hold far less than the 11 MB answer.
		sr.heldUp = !strings.Contains(logs.String(), `"path":"/user"`)
	}
	dec := json.NewDecoder(sr)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		t.Errorf("body does not start with '[': %v %v", tok, err)
		return
	}
	n, last := 0, int64(0)
	for dec.More() {
		var u struct {
			ID int64 `json:"id"`
		}
		if err := dec.Decode(&u); err != nil {
			t.Errorf("stream cut after %d users, %v in: %v", n, time.Since(t0).Round(time.Millisecond), err)
			return
		}
		if u.ID <= last {
			t.Errorf("user %d after %d: not in id order", u.ID, last)
			return
		}
		last = u.ID
		n++
	}
	if _, err := dec.Token(); err != nil {
		t.Errorf("stream cut after %d users, %v in: no closing ']': %v", n, time.Since(t0).Round(time.Millisecond), err)
		return
	}
	took := time.Since(t0)
	t.Logf("stream: %d users, %.1f MB in %v (first byte at %v) through a proxy delaying every chunk %v, read with a %v sleep every %d kB and one %v pause (request timeout %v)",
		n, float64(dec.InputOffset())/1e6, took.Round(time.Millisecond), ttfb.Round(time.Millisecond), delay, sr.every, sr.chunk>>10, pause, requestTimeout)
	if n != users {
		t.Errorf("streamed %d users, want %d", n, users)
	}
	if !sr.heldUp {
		t.Error("the handler had finished when the client's pause ended: the pause did not hold the stream up")
	}
	if took <= pause {
		t.Errorf("the stream took %v, not longer than the %v pause", took, pause)
	}
}

// slowReader sleeps for every after each chunk bytes read, and stops once
// for pause after pauseAt bytes.
type slowReader struct {
	r       io.Reader
	chunk   int
	every   time.Duration
	pauseAt int
	pause   time.Duration
	atPause func()
	read    int
	paused  bool
	heldUp  bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if !s.paused && s.read >= s.pauseAt {
		s.paused = true
		time.Sleep(s.pause)
		s.atPause()
	}
	n, err := s.r.Read(p[:min(len(p), s.chunk-s.read%s.chunk)])
	if s.read += n; s.read%s.chunk == 0 {
		time.Sleep(s.every)
	}
	return n, err
}

// blackholed silences the database and sends requests of every kind: a
// burst of twice the pool size at the cut, then a few more while the
// database stays silent. Each must be a 503 within silentBound of its
// start, after /-/ready turned 503.
func blackholed(t *testing.T, proxy *tcpProxy, base string, poolSize int) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	l := &load{base: base, client: client}
	probes := pollProbes(base)
	// Mid-TTL of the readiness cache, as in TestSlowDatabaseFault.
	time.Sleep(1250 * time.Millisecond)

	kinds := []func(i int) result{
		func(int) result { return l.do("list", http.MethodGet, "/user", nil) },
		func(i int) result {
			name := fmt.Sprintf("silent-%d", i)
			return l.do("create", http.MethodPost, "/user", userJSON(name, name+"@example.com"))
		},
		func(i int) result { return l.do("get", http.MethodGet, "/user/"+strconv.Itoa(i+1), nil) },
		func(i int) result { return postEvent(client, base, fmt.Sprintf("silent-%d", i)) },
	}
	var mu sync.Mutex
	var rs []result
	var wg sync.WaitGroup
	send := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kinds[i%len(kinds)](i)
			mu.Lock()
			rs = append(rs, r)
			mu.Unlock()
		}()
	}

	cut := time.Now()
	proxy.Blackhole()
	for i := range 2 * poolSize {
		send(i)
	}
	for i := 2 * poolSize; i < 2*poolSize+8; i++ {
		time.Sleep(250 * time.Millisecond)
		send(i)
	}
	wg.Wait()
	samples := probes()

	slices.SortFunc(rs, func(a, b result) int { return a.start.Compare(b.start) })
	var first503 time.Time
	byOp := map[string][]time.Duration{}
	for _, r := range rs {
		at := r.start.Sub(cut).Round(time.Millisecond)
		switch {
		case r.err != nil:
			t.Errorf("%s sent at +%v: %v (status %d)", r.op, at, r.err, r.status)
			continue
		case r.status != http.StatusServiceUnavailable:
			t.Errorf("%s sent at +%v: %d %s, want 503", r.op, at, r.status, r.body)
			continue
		case r.dur > silentBound:
			t.Errorf("%s sent at +%v: 503 after %v, over %v", r.op, at, r.dur.Round(time.Millisecond), silentBound)
		}
		var p testenv.Problem
		if r.contentType != "application/problem+json" || json.Unmarshal([]byte(r.body), &p) != nil || p.Type != "urn:problem:users:unavailable" {
			t.Errorf("%s: 503 with %q %s, want an unavailable problem", r.op, r.contentType, r.body)
		}
		if end := r.start.Add(r.dur); first503.IsZero() || end.Before(first503) {
			first503 = end
		}
		byOp[r.op] = append(byOp[r.op], r.dur)
	}
	for _, op := range []string{"list", "create", "get", "event"} {
		ds := byOp[op]
		slices.Sort(ds)
		if len(ds) > 0 {
			t.Logf("silent database: %d %s requests, 503 after min %v, median %v, max %v",
				len(ds), op, ds[0].Round(time.Millisecond), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
		}
	}
	t.Logf("silent database: slowest 503 %v (bound %v)", maxDur(rs).Round(time.Millisecond), silentBound)

	var notReady time.Time
	for _, s := range samples {
		if s.at.After(cut) && s.ready == http.StatusServiceUnavailable {
			notReady = s.at
			break
		}
	}
	switch {
	case notReady.IsZero():
		t.Error("/-/ready never turned 503 while the database was silent")
	case !first503.IsZero() && notReady.After(first503):
		t.Errorf("/-/ready turned 503 %v after the cut, after the first request's 503 at %v",
			notReady.Sub(cut).Round(time.Millisecond), first503.Sub(cut).Round(time.Millisecond))
	default:
		t.Logf("silent database: /-/ready 503 %v after the cut; first request 503 at %v",
			notReady.Sub(cut).Round(time.Millisecond), since(first503, cut))
	}
	for _, s := range samples {
		if s.at.After(notReady) && s.ready != http.StatusServiceUnavailable {
			t.Errorf("/-/ready answered %d at +%v, while the database was silent", s.ready, s.at.Sub(cut).Round(time.Millisecond))
		}
	}
}

// postEvent delivers one binary-mode CloudEvent creating a user.
func postEvent(c *http.Client, base, id string) result {
	r := result{op: "event", start: time.Now()}
	req, err := http.NewRequest(http.MethodPost, base+"/", strings.NewReader(string(userJSON(id, id+"@example.com"))))
	if err != nil {
		r.err = err
		return r
	}
	for k, v := range map[string]string{
		"Ce-Specversion": "1.0", "Ce-Id": id, "Ce-Source": "/tests/silent",
		"Ce-Type": "com.example.user.create", "Content-Type": "application/json",
	} {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		r.err, r.dur = err, time.Since(r.start)
		return r
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	r.dur = time.Since(r.start)
	r.status, r.contentType, r.body = resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	if err != nil {
		r.err = fmt.Errorf("read body: %w", err)
	}
	return r
}
