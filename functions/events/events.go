// Package events serves CloudEvents at POST /, where a Knative Trigger
// delivers by default. A com.example.user.create event creates a user,
// exactly once per event, and is answered with a com.example.user.created
// event that carries the user.
//
// Requests are decoded and replies encoded with sdk-go's HTTP protocol
// binding (binary and structured content mode), one request at a time in
// the request's own goroutine. sdk-go's client.NewHTTPReceiveHandler is not
// used: it hands every request through one channel shared by all requests,
// so under concurrent deliveries an event can be processed with another
// request's context and cancelled when that request ends
// (cloudevents/sdk-go#1224, #1332). It also answers errors as plain text,
// where this service answers problem details.
package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/example/users/pkg/body"
	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/requestid"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// The event types. The reply's type differs from the accepted one on
// purpose: a Broker sends replies back through its Triggers, and a reply
// of the accepted type would be delivered to this service again.
const (
	TypeCreate  = "com.example.user.create"
	TypeCreated = "com.example.user.created"
)

// Source is the source of every reply event.
const Source = "/users"

// MaxBody is the largest request body accepted (the event in structured
// mode, its data in binary mode).
const MaxBody = 64 << 10

// MaxKeyLen is the longest source and id accepted, in bytes. The pair is
// the primary key of the processed events, and a PostgreSQL index entry
// must fit in about 2.7 kB.
const MaxKeyLen = 1024

// Creator creates a user for an event exactly once; see
// store.Store.CreateForEvent.
type Creator interface {
	CreateForEvent(ctx context.Context, key store.EventKey, u user.New) (store.EventReply, error)
}

// Handler serves CloudEvents.
type Handler struct {
	users  Creator
	logger *slog.Logger
}

// New returns the CloudEvents handler.
func New(users Creator, logger *slog.Logger) *Handler {
	return &Handler{users: users, logger: logger}
}

// ServeHTTP answers 200 with the reply event, or a problem whose status
// follows Knative Eventing's delivery rules: 503 (and other 5xx) for what
// a redelivery can fix, 400, 413, 415 and 422 for what it cannot.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev, mode, p := decode(ctx, w, r)
	if p != nil {
		h.reject(ctx, w, ev, mode, *p)
		return
	}
	if p := check(ev); p != nil {
		h.reject(ctx, w, ev, mode, *p)
		return
	}
	n, err := user.ParseNew(ev.Data())
	if err != nil {
		h.reject(ctx, w, ev, mode, problem.From(err))
		return
	}
	rep, err := h.users.CreateForEvent(ctx, store.EventKey{Source: ev.Source(), ID: ev.ID()}, n)
	if err != nil {
		p := failure(err)
		if p.Status >= 500 {
			h.log(ctx, slog.LevelError, ev, mode, "failed", p.Status,
				slog.String("error", err.Error()))
			problem.Write(w, p)
			return
		}
		h.reject(ctx, w, ev, mode, p)
		return
	}

	outcome := "created"
	if rep.Duplicate {
		outcome = "duplicate"
	}
	h.log(ctx, slog.LevelInfo, ev, mode, outcome, http.StatusOK,
		slog.Int64("user_id", rep.UserID),
		slog.String("reply_id", rep.ID))

	reply := Reply(rep)
	// Answer in the mode the event came in; both are valid replies.
	wctx := binding.WithForceBinary(ctx)
	if mode == binding.EncodingStructured {
		wctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteResponseWriter(wctx, (*binding.EventMessage)(&reply), http.StatusOK, w); err != nil {
		// The user is stored; the sender sees a broken response, retries,
		// and gets the stored reply.
		h.log(ctx, slog.LevelWarn, ev, mode, "reply not sent", http.StatusOK,
			slog.String("error", err.Error()))
	}
}

// Reply is the reply event for rep. It depends on rep alone, so a
// redelivery is answered with the same event, id and time included.
func Reply(rep store.EventReply) event.Event {
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(rep.ID)
	e.SetSource(Source)
	e.SetType(TypeCreated)
	e.SetTime(rep.Time.UTC())
	e.SetDataContentType("application/json")
	// Set directly: SetData would mark []byte data for base64 encoding.
	e.DataEncoded = rep.Data
	return e
}

// decode reads the request as one CloudEvent in binary or structured
// mode. ev is nil when the request could not be decoded as one.
func decode(ctx context.Context, w http.ResponseWriter, r *http.Request) (*event.Event, binding.Encoding, *problem.Problem) {
	data, err := body.Read(w, r, MaxBody)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, binding.EncodingUnknown, ptr(tooLarge())
		}
		return nil, binding.EncodingUnknown, ptr(problem.New(http.StatusBadRequest, "the request body could not be read"))
	}
	msg := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(data)))
	mode := msg.ReadEncoding()
	switch mode {
	case binding.EncodingBinary, binding.EncodingStructured:
	case binding.EncodingBatch:
		return nil, mode, ptr(problem.New(http.StatusUnsupportedMediaType,
			"batched CloudEvents are not accepted; send one event per request"))
	default:
		return nil, mode, ptr(problem.New(http.StatusUnsupportedMediaType,
			"not a CloudEvent: send binary mode (ce-specversion: 1.0, ce-id, ce-source and ce-type headers) "+
				"or structured mode (Content-Type: application/cloudevents+json)"))
	}
	ev, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, mode, ptr(problem.New(http.StatusBadRequest, "not a valid CloudEvent: "+err.Error()))
	}
	if err := ev.Validate(); err != nil {
		// Returned with ev, so the log line names what the event has.
		return ev, mode, ptr(problem.New(http.StatusBadRequest, "not a valid CloudEvent: "+strings.TrimSpace(err.Error())))
	}
	return ev, mode, nil
}

// check rejects events this service does not take, before anything is
// stored.
func check(ev *event.Event) *problem.Problem {
	for _, a := range []struct{ name, v string }{{"source", ev.Source()}, {"id", ev.ID()}} {
		switch {
		case len(a.v) > MaxKeyLen:
			return ptr(problem.New(http.StatusBadRequest,
				fmt.Sprintf("the event's %s must be at most %d bytes", a.name, MaxKeyLen)))
		case !utf8.ValidString(a.v) || strings.ContainsRune(a.v, 0):
			return ptr(problem.New(http.StatusBadRequest,
				"the event's "+a.name+" must be valid UTF-8 without NUL characters"))
		}
	}
	if ev.Type() != TypeCreate {
		return ptr(problem.New(http.StatusBadRequest,
			fmt.Sprintf("unsupported event type %q; this service accepts %s", ev.Type(), TypeCreate)))
	}
	if ct := ev.DataContentType(); ct != "" && !body.IsJSON(ct) {
		return ptr(problem.New(http.StatusBadRequest,
			fmt.Sprintf("unsupported datacontenttype %q; the data must be application/json", ct)))
	}
	return nil
}

// failure maps a store error to the problem for an event. It differs from
// problem.From on purpose: a taken username or email is 422, since Knative
// retries a 409 although a redelivery cannot succeed. Everything else keeps
// problem.From's 5xx: in particular an unavailable database and a schema
// not yet migrated are 503, which Knative redelivers, and a redelivery
// after the outage or `users migrate up` succeeds.
func failure(err error) problem.Problem {
	if conflict, ok := errors.AsType[*store.ConflictError](err); ok {
		p := problem.New(http.StatusUnprocessableEntity, conflict.Error()+" by another user")
		p.Type = problem.TypeConflict
		p.Errors = []user.FieldError{{Field: conflict.Field, Message: "is already taken"}}
		return p
	}
	p := problem.From(err)
	if p.Status < 500 {
		// Nothing else the store returns is the sender's fault.
		return problem.New(http.StatusInternalServerError, "internal error")
	}
	return p
}

func tooLarge() problem.Problem {
	return problem.From(&http.MaxBytesError{Limit: MaxBody})
}

func ptr[T any](v T) *T { return &v }

// reject logs a 4xx outcome and writes the problem.
func (h *Handler) reject(ctx context.Context, w http.ResponseWriter, ev *event.Event, mode binding.Encoding, p problem.Problem) {
	h.log(ctx, slog.LevelInfo, ev, mode, "rejected", p.Status, slog.String("reason", p.Detail))
	problem.Write(w, p)
}

// log writes the one line per event: its type, source and id (when it
// could be decoded), the outcome and the status answered.
func (h *Handler) log(ctx context.Context, level slog.Level, ev *event.Event, mode binding.Encoding, outcome string, status int, attrs ...slog.Attr) {
	base := []slog.Attr{
		slog.String("request_id", requestid.From(ctx)),
		slog.String("outcome", outcome),
		slog.Int("status", status),
		slog.String("mode", modeName(mode)),
	}
	if ev != nil {
		base = append(base,
			slog.String("type", ev.Type()),
			slog.String("source", ev.Source()),
			slog.String("id", ev.ID()))
	}
	h.logger.LogAttrs(ctx, level, "cloudevent", append(base, attrs...)...)
}

func modeName(mode binding.Encoding) string {
	switch mode {
	case binding.EncodingBinary:
		return "binary"
	case binding.EncodingStructured:
		return "structured"
	case binding.EncodingBatch:
		return "batch"
	}
	return "none"
}
