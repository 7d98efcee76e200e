// Package problem writes RFC 9457 problem details, and holds the HTTP
// API's one table of errors to status codes (From). The CloudEvents
// endpoint answers through its own table (functions/events), because
// Knative's retry rules want other codes; both render through For, so a
// domain error reads the same whichever transport answers it.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/example/users/pkg/requestid"
	"github.com/example/users/pkg/user"
)

// ContentType is the media type of every error body.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object. It is also an error, so
// a handler returns a refusal of its own transport (a 415, say) the way
// it returns a domain error.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Errors []user.FieldError `json:"errors,omitempty"`
	// RetryAfter, when positive, is sent as Retry-After (seconds): the
	// same request may succeed that much later.
	RetryAfter int `json:"-"`
}

func (p *Problem) Error() string {
	return strconv.Itoa(p.Status) + " " + p.Title + ": " + p.Detail
}

// Problem type URIs.
const (
	TypeValidation  = "urn:problem:users:validation"
	TypeConflict    = "urn:problem:users:conflict"
	TypeUnavailable = "urn:problem:users:unavailable"
	TypeKeyReused   = "urn:problem:users:idempotency-key-reused"
	TypeKeyInUse    = "urn:problem:users:idempotency-key-in-use"
)

// New returns a problem of the generic type for status; a 503 says to
// retry in a second.
func New(status int, detail string) *Problem {
	p := &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
	if status == http.StatusServiceUnavailable {
		p.RetryAfter = 1
	}
	return p
}

// Write sends p as the response.
func Write(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	b, _ := json.Marshal(p) // a Problem always marshals
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// Statuses is one transport's table: the status code each domain error
// (pkg/user) is answered with. An error the table leaves at 0 is one the
// transport never expects, and is answered as a bug: 500.
type Statuses struct {
	Invalid     int // *user.ValidationError
	NotFound    int // user.ErrNotFound
	Taken       int // *user.TakenError
	Unavailable int // user.ErrUnavailable (user.ErrSchema among them), or a deadline passed waiting for it
	KeyReused   int // user.ErrKeyReused
	KeyInUse    int // user.ErrKeyInUse
}

// From maps err to the problem a client of the HTTP API gets.
func From(err error) *Problem {
	return For(err, Statuses{
		Invalid:     http.StatusBadRequest,
		NotFound:    http.StatusNotFound,
		Taken:       http.StatusConflict,
		Unavailable: http.StatusServiceUnavailable,
		// The IETF httpapi draft's choices: the key's request is
		// understood but cannot be processed with this body (422); the
		// first one has not finished (409).
		KeyReused: http.StatusUnprocessableEntity,
		KeyInUse:  http.StatusConflict,
	})
}

// For returns the problem err is answered with: err itself if it is a
// *Problem, a domain error at the status s gives it, and anything else as
// a 500. Internal details never reach the client.
func For(err error, s Statuses) *Problem {
	var p *Problem
	var invalid *user.ValidationError
	var taken *user.TakenError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &invalid):
		p = &Problem{Type: TypeValidation, Title: "Invalid request", Status: s.Invalid, Detail: invalid.Error(), Errors: invalid.Errors}
	case errors.As(err, &taken):
		p = &Problem{Type: TypeConflict, Status: s.Taken, Detail: taken.Error(),
			Errors: []user.FieldError{{Field: taken.Field, Message: "is already taken"}}}
	case errors.Is(err, user.ErrNotFound):
		p = &Problem{Type: "about:blank", Status: s.NotFound, Detail: "no such user"}
	case errors.Is(err, user.ErrKeyReused):
		p = &Problem{Type: TypeKeyReused, Status: s.KeyReused,
			Detail: "this Idempotency-Key created a user from another body; use a new key for a new user"}
	case errors.Is(err, user.ErrKeyInUse):
		p = &Problem{Type: TypeKeyInUse, Status: s.KeyInUse, RetryAfter: 1,
			Detail: "the first request with this Idempotency-Key is still being processed; retry it later"}
	case errors.Is(err, user.ErrSchema):
		// Before ErrUnavailable, which it wraps: the operator needs to know
		// that waiting will not help until the migrations run.
		p = &Problem{Type: TypeUnavailable, Status: s.Unavailable, RetryAfter: 1, Detail: "the database schema is not migrated; run `users migrate up`"}
	case errors.Is(err, user.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p = &Problem{Type: TypeUnavailable, Status: s.Unavailable, RetryAfter: 1, Detail: "the database is unavailable; retry later"}
	}
	if p == nil || p.Status == 0 {
		return New(http.StatusInternalServerError, "internal error")
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	return p
}

// Error maps err with From, logs server-side failures, and writes the problem.
func Error(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	p := From(err)
	if p.Status >= 500 {
		logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", requestid.From(r.Context())),
			slog.Int("status", p.Status),
			slog.String("error", err.Error()))
	}
	Write(w, p)
}
