package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/example/users/pkg/requestid"
)

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

func TestRouter(t *testing.T) {
	rt := NewRouter()
	rt.Handle(http.MethodGet, "/user", http.HandlerFunc(ok))
	rt.Handle(http.MethodPost, "/user", http.HandlerFunc(ok))
	rt.Handle(http.MethodGet, "/user/{id}", http.HandlerFunc(ok))
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/user", 200, ""},
		{"HEAD", "/user", 200, ""},
		{"POST", "/user", 200, ""},
		{"DELETE", "/user", 405, "GET, HEAD, POST"},
		{"PUT", "/user", 405, "GET, HEAD, POST"},
		{"GET", "/user/7", 200, ""},
		{"POST", "/user/7", 405, "GET, HEAD"},
		{"GET", "/users", 404, ""},
		{"GET", "/", 404, ""},
		{"GET", "/user/7/x", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if tt.status >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("error without a problem body: %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestMiddlewareRequestID(t *testing.T) {
	var logs bytes.Buffer
	var seen string
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = requestid.From(r.Context())
	}), slog.New(slog.NewJSONHandler(&logs, nil)), nil)

	for _, tt := range []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{"", ""},                       // generated
		{"bad id\nwith newline", ""},   // replaced
		{strings.Repeat("x", 200), ""}, // too long: replaced
	} {
		logs.Reset()
		req := httptest.NewRequest("GET", "/user", nil)
		if tt.sent != "" {
			req.Header.Set(requestid.Header, tt.sent)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get(requestid.Header)
		if tt.want != "" && got != tt.want || tt.want == "" && (len(got) != 32 || got == tt.sent) {
			t.Errorf("sent %q: echoed %q", tt.sent, got)
		}
		if seen != got {
			t.Errorf("handler saw %q, response says %q", seen, got)
		}
		var line map[string]any
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("access log is not one JSON line: %q", logs.String())
		}
		for _, k := range []string{"method", "path", "status", "bytes", "duration_ms", "request_id"} {
			if _, ok := line[k]; !ok {
				t.Errorf("access log lacks %s: %v", k, line)
			}
		}
		if line["request_id"] != got {
			t.Errorf("logged request id %v, want %q", line["request_id"], got)
		}
	}
}

func TestMiddlewareRecoversPanics(t *testing.T) {
	var logs bytes.Buffer
	h := Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("kaboom")
	}), slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set(requestid.Header, "panic-1")
	h.ServeHTTP(rec, req)
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d, %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if strings.Contains(rec.Body.String(), "kaboom") {
		t.Error("panic value leaked to the client")
	}
	if !strings.Contains(logs.String(), `"panic":"kaboom"`) || !strings.Contains(logs.String(), `"request_id":"panic-1"`) {
		t.Errorf("panic not logged with its request id: %s", logs.String())
	}
}

// TestServeDrains: after ctx is cancelled the drain hook runs at once,
// the server keeps answering for the drain delay, and a request in flight
// at shutdown completes.
func TestServeDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	drained := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/fast", ok)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.DiscardHandler)
	cfg := Shutdown{DrainDelay: 300 * time.Millisecond, Timeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, New(mux, logger), cfg, logger, func() { close(drained) }) }()

	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	cancel()
	<-drained
	// Within the drain delay new requests are still served.
	resp, err := http.Get(url + "/fast")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request during the drain delay: %v", err)
	}
	_ = resp.Body.Close()
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
