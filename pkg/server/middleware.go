package server

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/requestid"
)

// Middleware wraps h with, from the outside in: request ids, one access
// log line per request and its metrics (when m is not nil), and panic
// recovery. When a Router routes the request, the span in the request's
// context (otelhttp's server span, if tracing is on) is renamed after the
// route that matched.
func Middleware(h http.Handler, logger *slog.Logger, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestid.Header)
		if !requestid.Valid(id) {
			id = requestid.New()
		}
		w.Header().Set(requestid.Header, id)
		ctx := requestid.With(r.Context(), id)
		r = r.WithContext(ctx)
		rec := &recorder{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					finish(logger, m, r, rec, start, id)
					panic(v)
				}
				logger.LogAttrs(ctx, slog.LevelError, "panic",
					slog.String("request_id", id),
					slog.Any("panic", v),
					slog.String("stack", string(debug.Stack())))
				if !rec.wrote {
					problem.Write(rec, problem.New(http.StatusInternalServerError, "internal error"))
				}
			}
			finish(logger, m, r, rec, start, id)
		}()
		h.ServeHTTP(rec, r)
	})
}

// finish logs the request, records its metrics and names its span.
func finish(logger *slog.Logger, m *Metrics, r *http.Request, rec *recorder, start time.Time, id string) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(start)
	rt := route(r)
	if m != nil {
		m.record(r.Context(), r.Method, rt, status, elapsed)
	}
	if span := trace.SpanFromContext(r.Context()); rt != "" && span.IsRecording() {
		span.SetName(r.Method + " " + rt)
		span.SetAttributes(semconv.HTTPRoute(rt))
	}
	level := slog.LevelInfo
	// Probes arrive every few seconds from several sources; at info they
	// would drown the log.
	if strings.HasPrefix(r.URL.Path, "/-/") || strings.HasPrefix(r.URL.Path, "/health/") {
		level = slog.LevelDebug
	}
	logger.LogAttrs(r.Context(), level, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.String("request_id", id),
	)
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's Flush and
// deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Deadline bounds the work of h's requests: their context ends after
// timeout. Only the routes that reach the database need one; on a probe
// its timer was a sixth of the request's CPU (docs/performance.md).
func Deadline(h http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
