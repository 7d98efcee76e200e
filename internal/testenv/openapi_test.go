package testenv

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestContractCheck shows that the check catches answers that break the
// document and passes ones that keep it, including requests outside every
// operation.
func TestContractCheck(t *testing.T) {
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	problem := func(status int, extra func(http.Header)) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("X-Request-Id", "t-1")
			if extra != nil {
				extra(w.Header())
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"` + http.StatusText(status) + `","status":` + strconv.Itoa(status) + `}`))
		}
	}
	user := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Request-Id", "t-1")
			w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
			_, _ = w.Write([]byte(body))
		}
	}
	const alice = `{"id":1,"username":"alice","email":"alice@example.com","created_at":"2026-11-27T15:04:05Z"}`
	tests := []struct {
		name, method, target string
		h                    http.HandlerFunc
		want                 string // a substring of the first message; "" for none
	}{
		{"user", "GET", "/user/1", user(alice), ""},
		{"user with an extra field", "GET", "/user/1", user(`{"id":1,"username":"alice","email":"alice@example.com","created_at":"2026-11-27T15:04:05Z","admin":true}`), "failed to validate"},
		{"header changed after it was sent", "GET", "/user/1", func(w http.ResponseWriter, r *http.Request) {
			user(alice)(w, r)
			w.Header().Del("X-Request-Id") // too late: the client has it
		}, ""},
		{"user without X-Request-Id", "GET", "/user/1", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(alice))
		}, "X-Request-Id"},
		{"undocumented status", "GET", "/user/1", problem(http.StatusTeapot, nil), "418"},
		{"invalid request accepted", "GET", "/user?limit=0", user(`[]`), "accepted"},
		{"invalid request refused", "GET", "/user?limit=0", problem(http.StatusBadRequest, nil), "errors"},
		{"unknown path 404", "GET", "/admin", problem(http.StatusNotFound, nil), ""},
		{"unknown path 200", "GET", "/admin", user(alice), "must be 404"},
		{"wrong method 405", "DELETE", "/user", problem(http.StatusMethodNotAllowed, func(h http.Header) { h.Set("Allow", "GET, HEAD, POST") }), ""},
		{"odd method 405", "BREW", "/user/1", problem(http.StatusMethodNotAllowed, func(h http.Header) { h.Set("Allow", "GET, HEAD") }), ""},
		{"405 with a wrong Allow", "DELETE", "/user", problem(http.StatusMethodNotAllowed, func(h http.Header) { h.Set("Allow", "GET, POST") }), "Allow"},
		{"405 without Allow", "PUT", "/user", problem(http.StatusMethodNotAllowed, nil), "Allow"},
		{"non-canonical path redirected", "GET", "/user/../user", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/user", http.StatusMovedPermanently)
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			rec := httptest.NewRecorder()
			cw := &captureWriter{ResponseWriter: rec}
			tc.h(cw, req)
			cw.finish(rec)
			resp := rec.Result()
			resp.Header = cw.header
			msgs := c.check(req, resp, cw.body.Bytes())
			switch {
			case tc.want == "" && len(msgs) > 0:
				t.Errorf("want no message, got %q", msgs)
			case tc.want != "" && (len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), tc.want)):
				t.Errorf("want a message with %q, got %q", tc.want, msgs)
			}
		})
	}
}
