package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/telemetry"
)

// The benchmarks drive the composed handler (middleware, router, handler,
// store, real PostgreSQL) in-process, so the figures are the service's own
// cost per request without the network or an HTTP client.
//
//	go test -run '^$' -bench . -benchmem ./pkg/app/

// benchWriter is a ResponseWriter that keeps only the status and the byte
// count: a recorder would copy every body and its buffer growth would
// dominate the list benchmarks' allocations.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *benchWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

func benchApp(b *testing.B) (*app.Function, *bun.DB) {
	return benchAppTelemetry(b, telemetry.Options{})
}

// benchAppTelemetry is benchApp with extra telemetry options.
func benchAppTelemetry(b *testing.B, extra telemetry.Options) (*app.Function, *bun.DB) {
	b.Helper()
	db, cfg := testenv.DB(b)
	fn := app.New(io.Discard)
	if err := fn.StartTelemetry(context.Background(), testenv.Config(b, cfg), extra); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fn.Stop(context.Background()) })
	return fn, db
}

// benchSeed inserts n users in one statement.
func benchSeed(b *testing.B, db *bun.DB, n int) {
	b.Helper()
	_, err := db.ExecContext(context.Background(),
		`INSERT INTO users (username, email)
		 SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, ?) AS i`, n)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), "ANALYZE users"); err != nil {
		b.Fatal(err)
	}
}

// benchServe runs req through fn b.N times and checks every answer.
func benchServe(b *testing.B, fn *app.Function, want int, req func(i int) *http.Request) {
	b.Helper()
	w := &benchWriter{h: http.Header{}}
	// One warm-up request opens the pool's connection and fills caches.
	fn.ServeHTTP(w, req(-1))
	if w.status != want {
		b.Fatalf("warm-up: status %d, want %d", w.status, want)
	}
	b.ReportAllocs()
	bytes := 0
	cpu := selfCPU(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w.reset()
		fn.ServeHTTP(w, req(i))
		if w.status != want {
			b.Fatalf("request %d: status %d, want %d", i, w.status, want)
		}
		bytes = w.n
	}
	b.ReportMetric(float64(bytes), "body-B")
	// CPU time of this process per request: on a machine shared with
	// other work, wall time mostly measures the wait for a core.
	b.ReportMetric(float64(selfCPU(b)-cpu)/float64(b.N), "go-cpu-ns/op")
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchGET returns one request for target, reused by every iteration so
// the figures hold the server's cost only (the middleware hands the
// handlers a copy, so nothing leaks from one iteration to the next).
func benchGET(target string) func(int) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	return func(int) *http.Request { return r }
}

func BenchmarkList(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run("users="+strconv.Itoa(n), func(b *testing.B) {
			fn, db := benchApp(b)
			benchSeed(b, db, n)
			benchServe(b, fn, http.StatusOK, benchGET("/user"))
		})
	}
}

func BenchmarkListPage(b *testing.B) {
	fn, db := benchApp(b)
	benchSeed(b, db, 10_000)
	benchServe(b, fn, http.StatusOK, benchGET("/user?after=5000&limit=100"))
}

func BenchmarkCreate(b *testing.B) {
	fn, _ := benchApp(b)
	benchCreate(b, fn)
}

// BenchmarkTraced is BenchmarkList (100 users) and BenchmarkCreate with
// every request traced (sampler ratio 1.0) through the batch span
// processor production uses; the exporter drops the batches, so the
// figures hold the cost of making the spans, not of sending them.
func BenchmarkTraced(b *testing.B) {
	traced := func(b *testing.B) *app.Function {
		fn, db := benchAppTelemetry(b, telemetry.Options{
			SpanProcessor: sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())})
		benchSeed(b, db, 100)
		return fn
	}
	b.Run("list", func(b *testing.B) {
		benchServe(b, traced(b), http.StatusOK, benchGET("/user"))
	})
	b.Run("create", func(b *testing.B) { benchCreate(b, traced(b)) })
}

func benchCreate(b *testing.B, fn *app.Function) {
	b.Helper()
	benchServe(b, fn, http.StatusCreated, func(i int) *http.Request {
		s := strconv.Itoa(i + 1) // i is -1 for the warm-up
		// http.NewRequest rather than httptest.NewRequest, which parses
		// a request line through a 4 kB bufio.Reader each time and would
		// put the client's cost into the figures.
		r, err := http.NewRequest(http.MethodPost, "/user",
			strings.NewReader(`{"username":"bench`+s+`","email":"bench`+s+`@example.com"}`))
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		return r
	})
}

func BenchmarkGet(b *testing.B) {
	fn, db := benchApp(b)
	benchSeed(b, db, 10_000)
	benchServe(b, fn, http.StatusOK, benchGET("/user/5000"))
}

func BenchmarkGetMissing(b *testing.B) {
	fn, _ := benchApp(b)
	benchServe(b, fn, http.StatusNotFound, benchGET("/user/5000"))
}

func BenchmarkLiveness(b *testing.B) {
	fn, _ := benchApp(b)
	benchServe(b, fn, http.StatusOK, benchGET("/-/healthy"))
}

func BenchmarkReadiness(b *testing.B) {
	fn, _ := benchApp(b)
	benchServe(b, fn, http.StatusOK, benchGET("/-/ready"))
}
