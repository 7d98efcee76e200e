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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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
	tracer trace.Tracer
	// outcomes holds each outcome's attribute set as the slice Add's
	// variadic parameter takes, so counting allocates nothing.
	outcomes map[string][]metric.AddOption
	counter  metric.Int64Counter
}

// The outcomes of a delivery, as logged and counted.
const (
	OutcomeCreated   = "created"   // a user was created
	OutcomeDuplicate = "duplicate" // a redelivery, answered with the stored reply
	OutcomeRejected  = "rejected"  // the sender's fault, 4xx: not redelivered
	OutcomeFailed    = "failed"    // ours, 5xx: redelivered
)

// New returns the CloudEvents handler. Its spans go to tp (nil: no
// spans, and the replies carry the sender's trace context on), and
// users.cloudevents.deliveries counts deliveries by outcome through mp.
func New(users Creator, logger *slog.Logger, tp trace.TracerProvider, mp metric.MeterProvider) (*Handler, error) {
	c, err := mp.Meter("github.com/example/users/functions/events").Int64Counter("users.cloudevents.deliveries",
		metric.WithUnit("{delivery}"), metric.WithDescription("CloudEvents delivered, by outcome."))
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	h := &Handler{users: users, logger: logger, counter: c, outcomes: map[string][]metric.AddOption{}}
	if tp != nil {
		h.tracer = tp.Tracer("github.com/example/users/functions/events")
	}
	for _, o := range []string{OutcomeCreated, OutcomeDuplicate, OutcomeRejected, OutcomeFailed} {
		h.outcomes[o] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", o)))}
	}
	return h, nil
}

// ServeHTTP answers 200 with the reply event, or the problem answer gives.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev, mode, err := decode(ctx, w, r)
	ctx, span := h.startSpan(ctx, ev)
	defer span.End()
	if err != nil {
		h.fail(ctx, w, ev, mode, err)
		return
	}
	rep, err := h.create(ctx, ev)
	if err != nil {
		h.fail(ctx, w, ev, mode, err)
		return
	}

	outcome := OutcomeCreated
	if rep.Duplicate {
		outcome = OutcomeDuplicate
	}
	h.count(ctx, outcome)
	h.log(ctx, slog.LevelInfo, ev, mode, outcome, http.StatusOK,
		slog.Int64("user_id", rep.UserID),
		slog.String("reply_id", rep.ID))

	reply := Reply(rep)
	// The reply goes on in the delivery's trace (the CloudEvents
	// distributed-tracing extension), so what the Broker sends it to next
	// is a child of this span, or of the sender's without tracing.
	carry := ctx
	if h.tracer == nil {
		carry = trace.ContextWithRemoteSpanContext(ctx, sender(ev))
	}
	propagation.TraceContext{}.Inject(carry, extensions{&reply})
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

// startSpan starts the delivery's span. Its parent is the trace context
// the event carries in its traceparent extension, which the sender set
// and Knative Eventing passes on unchanged; the HTTP request that carried
// it, a hop of the Broker's, is linked. Without the extension the span is
// the HTTP request's child.
func (h *Handler) startSpan(ctx context.Context, ev *event.Event) (context.Context, trace.Span) {
	if h.tracer == nil {
		return ctx, noop.Span{}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	name := "process"
	if ev != nil {
		opts = append(opts, trace.WithAttributes(
			attribute.String("cloudevents.event_id", ev.ID()),
			attribute.String("cloudevents.event_source", ev.Source()),
			attribute.String("cloudevents.event_type", ev.Type()),
			attribute.String("cloudevents.event_spec_version", ev.SpecVersion()),
		))
		if ev.Type() == TypeCreate {
			name = "process " + TypeCreate
		}
		if sent := sender(ev); sent.IsValid() {
			if hop := trace.SpanContextFromContext(ctx); hop.IsValid() && !hop.Equal(sent) {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: hop}))
			}
			ctx = trace.ContextWithRemoteSpanContext(ctx, sent)
		}
	}
	return h.tracer.Start(ctx, name, opts...)
}

// sender is the trace context the event carries in its traceparent and
// tracestate extensions: the sender's span.
func sender(ev *event.Event) trace.SpanContext {
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), extensions{ev}))
}

// extensions carries trace context in an event's extensions.
type extensions struct{ ev *event.Event }

func (e extensions) Get(key string) string {
	v, ok := e.ev.Extensions()[key]
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

func (e extensions) Set(key, value string) { e.ev.SetExtension(key, value) }

func (e extensions) Keys() []string { return []string{"traceparent", "tracestate"} }

// count records a delivery's outcome: counted, and on its span.
func (h *Handler) count(ctx context.Context, outcome string) {
	h.counter.Add(ctx, 1, h.outcomes[outcome]...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("users.outcome", outcome))
	}
}

// create creates the user a decoded event asks for, exactly once.
func (h *Handler) create(ctx context.Context, ev *event.Event) (store.EventReply, error) {
	if err := check(ev); err != nil {
		return store.EventReply{}, err
	}
	n, err := user.ParseNew(ev.Data())
	if err != nil {
		return store.EventReply{}, err
	}
	return h.users.CreateForEvent(ctx, store.EventKey{Source: ev.Source(), ID: ev.ID()}, n)
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
func decode(ctx context.Context, w http.ResponseWriter, r *http.Request) (*event.Event, binding.Encoding, error) {
	data, err := body.Read(w, r, MaxBody)
	if err != nil {
		return nil, binding.EncodingUnknown, err
	}
	msg := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(data)))
	mode := msg.ReadEncoding()
	switch mode {
	case binding.EncodingBinary, binding.EncodingStructured:
	case binding.EncodingBatch:
		return nil, mode, problem.New(http.StatusUnsupportedMediaType,
			"batched CloudEvents are not accepted; send one event per request")
	default:
		return nil, mode, problem.New(http.StatusUnsupportedMediaType,
			"not a CloudEvent: send binary mode (ce-specversion: 1.0, ce-id, ce-source and ce-type headers) "+
				"or structured mode (Content-Type: application/cloudevents+json)")
	}
	ev, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, mode, problem.New(http.StatusBadRequest, "not a valid CloudEvent: "+err.Error())
	}
	if err := ev.Validate(); err != nil {
		// Returned with ev, so the log line names what the event has.
		return ev, mode, problem.New(http.StatusBadRequest, "not a valid CloudEvent: "+strings.TrimSpace(err.Error()))
	}
	return ev, mode, nil
}

// check rejects events this service does not take, before anything is
// stored.
func check(ev *event.Event) error {
	for _, a := range []struct{ name, v string }{{"source", ev.Source()}, {"id", ev.ID()}} {
		switch {
		case len(a.v) > MaxKeyLen:
			return problem.New(http.StatusBadRequest,
				fmt.Sprintf("the event's %s must be at most %d bytes", a.name, MaxKeyLen))
		case !utf8.ValidString(a.v) || strings.ContainsRune(a.v, 0):
			return problem.New(http.StatusBadRequest,
				"the event's "+a.name+" must be valid UTF-8 without NUL characters")
		}
	}
	if ev.Type() != TypeCreate {
		return problem.New(http.StatusBadRequest,
			fmt.Sprintf("unsupported event type %q; this service accepts %s", ev.Type(), TypeCreate))
	}
	if ct := ev.DataContentType(); ct != "" && !body.IsJSON(ct) {
		return problem.New(http.StatusBadRequest,
			fmt.Sprintf("unsupported datacontenttype %q; the data must be application/json", ct))
	}
	return nil
}

// answer maps err to the problem an event gets: this endpoint's one table
// of errors to status codes. Knative Eventing redelivers on 404, 408, 409,
// 429 and any 5xx, so the codes are 503 for what a redelivery can fix (an
// unavailable database, a schema not yet migrated: after the outage or
// `users migrate up` it succeeds) and 400, 413, 415 and 422 for what it
// cannot. A taken username or email is therefore 422, not the API's 409;
// any other error (not found included: no event looks a user up) is a
// bug, 500.
func answer(err error) *problem.Problem {
	p := problem.For(err, problem.Statuses{
		Invalid:     http.StatusBadRequest,
		Taken:       http.StatusUnprocessableEntity,
		Unavailable: http.StatusServiceUnavailable,
	})
	if _, ok := errors.AsType[*user.TakenError](err); ok {
		// The sender may think of its own earlier delivery; that one would
		// have been answered with its reply.
		p.Detail += " by another user"
	}
	return p
}

// fail logs the outcome of a failed event and writes its problem: a 4xx
// is the sender's, "rejected" with the reason it was told; a 5xx is ours,
// "failed" with the full error.
func (h *Handler) fail(ctx context.Context, w http.ResponseWriter, ev *event.Event, mode binding.Encoding, err error) {
	p := answer(err)
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int("http.response.status_code", p.Status))
	if p.Status >= 500 {
		h.count(ctx, OutcomeFailed)
		span.SetStatus(codes.Error, err.Error())
		h.log(ctx, slog.LevelError, ev, mode, OutcomeFailed, p.Status, slog.String("error", err.Error()))
	} else {
		h.count(ctx, OutcomeRejected)
		h.log(ctx, slog.LevelInfo, ev, mode, OutcomeRejected, p.Status, slog.String("reason", p.Detail))
	}
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
