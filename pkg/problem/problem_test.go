package problem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/requestid"
	"github.com/example/users/pkg/user"
)

// The API's bodies, byte for byte: clients and the README depend on them.
func TestFrom(t *testing.T) {
	invalid := &user.ValidationError{Errors: []user.FieldError{
		{Field: "username", Message: "is required"},
		{Field: "email", Message: "is required"},
	}}
	tests := []struct {
		name   string
		err    error
		status int
		body   string
	}{
		{"invalid", fmt.Errorf("parse: %w", invalid), 400,
			`{"type":"urn:problem:users:validation","title":"Invalid request","status":400,"detail":"invalid input: username: is required; email: is required","errors":[{"field":"username","message":"is required"},{"field":"email","message":"is required"}]}`},
		{"taken", fmt.Errorf("insert user: %w", &user.TakenError{Field: "email"}), 409,
			`{"type":"urn:problem:users:conflict","title":"Conflict","status":409,"detail":"email is already taken","errors":[{"field":"email","message":"is already taken"}]}`},
		{"not found", fmt.Errorf("get user 7: %w", user.ErrNotFound), 404,
			`{"type":"about:blank","title":"Not Found","status":404,"detail":"no such user"}`},
		{"schema", fmt.Errorf("list users: %w: %w", user.ErrSchema, errors.New(`relation "users" does not exist`)), 503,
			`{"type":"urn:problem:users:unavailable","title":"Service Unavailable","status":503,"detail":"the database schema is not migrated; run ` + "`users migrate up`" + `"}`},
		{"unavailable", fmt.Errorf("ping: %w: %w", user.ErrUnavailable, errors.New("dial tcp 10.0.0.1:5432: connection refused")), 503,
			`{"type":"urn:problem:users:unavailable","title":"Service Unavailable","status":503,"detail":"the database is unavailable; retry later"}`},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), 503,
			`{"type":"urn:problem:users:unavailable","title":"Service Unavailable","status":503,"detail":"the database is unavailable; retry later"}`},
		{"canceled", context.Canceled, 503,
			`{"type":"urn:problem:users:unavailable","title":"Service Unavailable","status":503,"detail":"the database is unavailable; retry later"}`},
		{"a problem passes through", problem.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json"), 415,
			`{"type":"about:blank","title":"Unsupported Media Type","status":415,"detail":"Content-Type must be application/json"}`},
		{"anything else is a bug", errors.New(`ERROR: syntax error at or near "SELEC" (SQLSTATE=42601)`), 500,
			`{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			problem.Write(rec, problem.From(tt.err))
			if rec.Code != tt.status || rec.Body.String() != tt.body+"\n" {
				t.Errorf("got %d %s\nwant %d %s", rec.Code, rec.Body, tt.status, tt.body)
			}
		})
	}
}

// For with another transport's table: a status the table leaves out is
// a 500, and the title follows the status the table chose.
func TestForOtherTable(t *testing.T) {
	table := problem.Statuses{Invalid: 400, Taken: http.StatusUnprocessableEntity, Unavailable: 503}
	tests := []struct {
		name   string
		err    error
		status int
		title  string
		typ    string
	}{
		{"taken", &user.TakenError{Field: "username"}, 422, "Unprocessable Entity", problem.TypeConflict},
		{"invalid keeps its title", &user.ValidationError{}, 400, "Invalid request", problem.TypeValidation},
		{"not in the table", user.ErrNotFound, 500, "Internal Server Error", "about:blank"},
		{"schema", user.ErrSchema, 503, "Service Unavailable", problem.TypeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := problem.For(tt.err, table)
			if p.Status != tt.status || p.Title != tt.title || p.Type != tt.typ {
				t.Errorf("got %d %q %q, want %d %q %q", p.Status, p.Title, p.Type, tt.status, tt.title, tt.typ)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		p          *problem.Problem
		status     int
		retryAfter string
	}{
		{"400", problem.New(http.StatusBadRequest, "why"), http.StatusBadRequest, ""},
		{"404", problem.New(http.StatusNotFound, "why"), http.StatusNotFound, ""},
		{"500", problem.New(http.StatusInternalServerError, "why"), http.StatusInternalServerError, ""},
		{"503", problem.New(http.StatusServiceUnavailable, "why"), http.StatusServiceUnavailable, "1"},
		{"unavailable", problem.From(user.ErrUnavailable), http.StatusServiceUnavailable, "1"},
		{"key in use", problem.From(user.ErrKeyInUse), http.StatusConflict, "1"},
		{"taken", problem.From(&user.TakenError{Field: "email"}), http.StatusConflict, ""},
		{"key reused", problem.From(user.ErrKeyReused), http.StatusUnprocessableEntity, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			problem.Write(rec, tt.p)
			h := rec.Header()
			if rec.Code != tt.status || h.Get("Content-Type") != problem.ContentType || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("status %d, headers %v", rec.Code, h)
			}
			if h.Get("Retry-After") != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", h.Get("Retry-After"), tt.retryAfter)
			}
			if h.Get("Content-Length") != strconv.Itoa(rec.Body.Len()) || !strings.HasSuffix(rec.Body.String(), "}\n") {
				t.Errorf("Content-Length %s for body %q", h.Get("Content-Length"), rec.Body)
			}
		})
	}
}

// Error logs what the client is not told, and only for server failures.
func TestErrorLogs(t *testing.T) {
	tests := []struct {
		name string
		err  error
		logs bool
	}{
		{"client error", &user.TakenError{Field: "username"}, false},
		{"unavailable", fmt.Errorf("get user 1: %w: dial tcp: refused", user.ErrUnavailable), true},
		{"bug", errors.New("boom"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := httptest.NewRequestWithContext(requestid.With(context.Background(), "req-1"), http.MethodGet, "/user/1", nil)
			problem.Error(httptest.NewRecorder(), r, slog.New(slog.NewJSONHandler(&logs, nil)), tt.err)
			logged := strings.Contains(logs.String(), `"request_id":"req-1"`) && strings.Contains(logs.String(), tt.err.Error())
			if logged != tt.logs {
				t.Errorf("logged %v, want %v: %s", logged, tt.logs, logs.String())
			}
		})
	}
}
