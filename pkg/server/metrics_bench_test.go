package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/example/users/pkg/telemetry"
)

// BenchmarkMiddleware isolates what the request metrics add to a request:
// the same router and trivial handler, without metrics and with them
// recorded through the production meter provider (the Prometheus reader).
// The difference in ns/op is their whole cost per request, which
// docs/performance.md sets against the endpoints' own cost; measured end
// to end the few hundred nanoseconds would drown in the noise.
//
//	go test -run '^$' -bench Middleware -count 10 ./pkg/server/
func BenchmarkMiddleware(b *testing.B) {
	tel, err := telemetry.New(context.Background(), telemetry.Options{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m, err := NewMetrics(tel.MeterProvider)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		m    *Metrics
	}{{"metrics=off", nil}, {"metrics=on", m}} {
		b.Run(bc.name, func(b *testing.B) {
			rt := NewRouter()
			rt.Handle(http.MethodGet, "/user/{id}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "{}")
			}))
			h := Middleware(rt, slog.New(slog.DiscardHandler), bc.m)
			req := httptest.NewRequest(http.MethodGet, "/user/42", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
