//go:build slow

package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// result is one request of a load run.
type result struct {
	op          string // "create", "list", "get"
	status      int    // 0 when the request failed without an answer
	err         error
	start       time.Time
	dur         time.Duration
	id          int64  // the created user's id, for a 201
	username    string // the created user's name, for a 201
	contentType string
	body        string // for answers other than 200 and 201
}

// load drives a steady mix of creates, list pages and single reads at
// base from several workers until stopped. Its request loop is bounded by
// the stop call and by maxDuration, whichever comes first.
type load struct {
	base   string
	client *http.Client
	nonce  string

	mu      sync.Mutex
	results []result

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(base string, workers int, client *http.Client, maxDuration time.Duration) *load {
	var b [4]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), maxDuration)
	l := &load{base: base, client: client, nonce: hex.EncodeToString(b[:]), cancel: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.worker(ctx, w)
		}()
	}
	return l
}

func (l *load) worker(ctx context.Context, w int) {
	var lastID int64
	for i := 0; ctx.Err() == nil; i++ {
		var r result
		switch {
		case i%3 == 0:
			name := fmt.Sprintf("w%d-%d-%s", w, i, l.nonce)
			r = l.do("create", http.MethodPost, "/user", userJSON(name, name+"@example.com"))
			if r.status == http.StatusCreated {
				lastID = r.id
				if r.username != name {
					r.err = fmt.Errorf("created %q, answered user %d %q", name, r.id, r.username)
				}
			}
		case i%3 == 2 && lastID > 0:
			r = l.do("get", http.MethodGet, "/user/"+strconv.FormatInt(lastID, 10), nil)
		default:
			r = l.do("list", http.MethodGet, "/user?limit=20", nil)
		}
		l.mu.Lock()
		l.results = append(l.results, r)
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// do sends one request. It deliberately does not use the load's context:
// a request in flight when the load stops runs to its end, so its answer
// is judged like any other.
func (l *load) do(op, method, path string, body []byte) result {
	r := result{op: op, start: time.Now()}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, l.base+path, rd)
	if err != nil {
		r.err = err
		return r
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		r.err, r.dur = err, time.Since(r.start)
		return r
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	r.dur = time.Since(r.start)
	r.status, r.contentType = resp.StatusCode, resp.Header.Get("Content-Type")
	if err != nil {
		r.err = fmt.Errorf("read body: %w", err)
		return r
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		var u createdUser
		if err := json.Unmarshal(b, &u); err != nil {
			r.err = fmt.Errorf("201 body %q: %w", b, err)
		}
		r.id, r.username = u.ID, u.Username
	case http.StatusOK:
		if !json.Valid(b) {
			r.err = fmt.Errorf("200 body is not JSON: %q", b)
		}
		// An answer meant for another request (a connection reused after
		// a timeout, say) must never reach this one.
		if op == "get" {
			var u createdUser
			if err := json.Unmarshal(b, &u); err != nil || "/user/"+strconv.FormatInt(u.ID, 10) != path {
				r.err = fmt.Errorf("GET %s answered user %d: %s", path, u.ID, b)
			}
		}
	default:
		r.body = string(b)
	}
	return r
}

// stop ends the load and returns every result in start order.
func (l *load) stop() []result {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]result(nil), l.results...)
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// created returns id to username for every 201 in rs.
func created(rs []result) map[int64]string {
	m := map[int64]string{}
	for _, r := range rs {
		if r.status == http.StatusCreated {
			m[r.id] = r.username
		}
	}
	return m
}

// summary counts results by operation and status, for the test log.
func summary(rs []result) string {
	counts := map[string]int{}
	for _, r := range rs {
		k := r.op + " " + strconv.Itoa(r.status)
		if r.err != nil && r.status == 0 {
			k = r.op + " error"
		}
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %d", k, counts[k])
	}
	return b.String()
}

// maxDur is the longest request in rs.
func maxDur(rs []result) time.Duration {
	var m time.Duration
	for _, r := range rs {
		m = max(m, r.dur)
	}
	return m
}

// missingIDs returns the ids of want (id to username) that the users
// table, read straight from the database, does not hold.
func missingIDs(t *testing.T, db *bun.DB, want map[int64]string) []int64 {
	t.Helper()
	have := map[int64]string{}
	for _, r := range snapshot(t, db) {
		have[r.ID] = r.Username
	}
	var missing []int64
	for id, name := range want {
		if have[id] != name {
			missing = append(missing, id)
		}
	}
	return missing
}

// getStatus GETs url and returns the status, draining the body.
func getStatus(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// isRefused reports whether err is a refused TCP connection: the request
// never reached a server.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}
