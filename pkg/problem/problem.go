// Package problem writes RFC 9457 problem details and maps the service's
// errors to them. It is the one place where errors become status codes.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/example/users/pkg/requestid"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// ContentType is the media type of every error body.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Errors []user.FieldError `json:"errors,omitempty"`
}

// Problem type URIs.
const (
	TypeValidation  = "urn:problem:users:validation"
	TypeConflict    = "urn:problem:users:conflict"
	TypeUnavailable = "urn:problem:users:unavailable"
)

// New returns a problem of the generic type for status.
func New(status int, detail string) Problem {
	return Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// Write sends p as the response.
func Write(w http.ResponseWriter, p Problem) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	b, _ := json.Marshal(p) // a Problem always marshals
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// From maps err to the problem a client gets. Internal details never
// reach the client; a 500 is logged with the full error.
func From(err error) Problem {
	var verr *user.ValidationError
	var conflict *store.ConflictError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &verr):
		p := New(http.StatusBadRequest, verr.Error())
		p.Type, p.Title, p.Errors = TypeValidation, "Invalid request", verr.Errors
		return p
	case errors.As(err, &conflict):
		p := New(http.StatusConflict, conflict.Error())
		p.Type = TypeConflict
		p.Errors = []user.FieldError{{Field: conflict.Field, Message: "is already taken"}}
		return p
	case errors.As(err, &tooLarge):
		return New(http.StatusRequestEntityTooLarge, "the request body must be at most "+strconv.FormatInt(tooLarge.Limit, 10)+" bytes")
	case errors.Is(err, store.ErrNotFound):
		return New(http.StatusNotFound, "no such user")
	case errors.Is(err, store.ErrSchema):
		// Before ErrUnavailable, which it wraps: the operator needs to know
		// that waiting will not help until the migrations run.
		p := New(http.StatusServiceUnavailable, "the database schema is not migrated; run `users migrate up`")
		p.Type = TypeUnavailable
		return p
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p := New(http.StatusServiceUnavailable, "the database is unavailable; retry later")
		p.Type = TypeUnavailable
		return p
	}
	return New(http.StatusInternalServerError, "internal error")
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
