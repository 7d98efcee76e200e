package body_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/example/users/pkg/body"
	"github.com/example/users/pkg/problem"
)

func TestIsJSON(t *testing.T) {
	tests := []struct {
		contentType string
		want        bool
	}{
		{"application/json", true},
		{"Application/JSON", true},
		{"application/json; charset=utf-8", true},
		{"application/json; charset=UTF-8", true},
		{"application/json; charset=latin1", false},
		{"application/json; charset", false},
		{"application/problem+json", false},
		{"application/cloudevents+json", false},
		{"text/json", false},
		{"text/plain", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			if got := body.IsJSON(tt.contentType); got != tt.want {
				t.Errorf("IsJSON(%q) = %v, want %v", tt.contentType, got, tt.want)
			}
		})
	}
}

// reads counts what Read takes from the body; broken fails every read.
type reads struct {
	r      io.Reader
	n      int
	broken bool
}

func (c *reads) Read(p []byte) (int, error) {
	if c.broken {
		return 0, errors.New("connection reset by peer")
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestRead(t *testing.T) {
	const limit = 16
	long := strings.Repeat("x", 10*limit)
	tests := []struct {
		name    string
		body    string
		length  int64 // Content-Length; -1 chunked
		broken  bool
		status  int // 0: read
		detail  string
		maxRead int // at most this much taken from the body
	}{
		{"short", `{"a":1}`, 7, false, 0, "", limit},
		{"at the limit", long[:limit], limit, false, 0, "", limit},
		{"at the limit, chunked", long[:limit], -1, false, 0, "", limit + 1},
		{"empty", "", 0, false, 0, "", 0},
		{"declared too large: refused unread", long[:limit+1], limit + 1, false,
			http.StatusRequestEntityTooLarge, "the request body must be at most 16 bytes", 0},
		{"chunked too large: cut at the limit", long, -1, false,
			http.StatusRequestEntityTooLarge, "the request body must be at most 16 bytes", limit + 1},
		{"unreadable", "", -1, true, http.StatusBadRequest, "the request body could not be read", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &reads{r: strings.NewReader(tt.body), broken: tt.broken}
			r := httptest.NewRequest(http.MethodPost, "/", src)
			r.ContentLength = tt.length
			got, err := body.Read(httptest.NewRecorder(), r, limit)
			if tt.status == 0 {
				if err != nil || string(got) != tt.body {
					t.Fatalf("Read = %q, %v; want %q", got, err, tt.body)
				}
			} else {
				p, ok := errors.AsType[*problem.Problem](err)
				if !ok || p.Status != tt.status || p.Detail != tt.detail {
					t.Fatalf("Read error %v, want a %d problem %q", err, tt.status, tt.detail)
				}
			}
			if src.n > tt.maxRead {
				t.Errorf("took %d bytes of the body, want at most %d", src.n, tt.maxRead)
			}
		})
	}
}
