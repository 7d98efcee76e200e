// Package app is the composition root: it builds the store, the handlers
// and the router from a configuration, and exposes them as one function
// in the shape Knative's func runtime expects (Handle, Start, Stop, Ready,
// Alive). The `users` binary drives the same Function.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/extra/bunotel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/example/users/api"
	"github.com/example/users/functions/create"
	"github.com/example/users/functions/events"
	"github.com/example/users/functions/get"
	"github.com/example/users/functions/list"
	"github.com/example/users/functions/probes"
	"github.com/example/users/migrations"
	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/health"
	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/server"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/telemetry"
)

// Function is the composed service.
type Function struct {
	// Version is the service.version of its telemetry. New sets it from
	// the build information; the binary sets its stamped version before
	// Start.
	Version string

	logger *slog.Logger
	level  *slog.LevelVar

	handler atomic.Pointer[http.Handler]
	drained atomic.Bool

	mu      sync.Mutex
	db      *bun.DB
	checker *health.Checker
	router  *server.Router
	tel     *telemetry.Telemetry
	side    []*http.Server // METRICS_ADDR's and DEBUG_ADDR's
	// stopSweep stops sweepKeys and waits for it.
	stopSweep func()
}

// New returns a Function that logs JSON to w. It serves 503 until Start.
func New(w io.Writer) *Function {
	level := new(slog.LevelVar)
	return &Function{
		Version: buildVersion(),
		logger:  slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))),
		level:   level,
	}
}

// buildVersion is the main module's version as the go command recorded
// it: a tag for `go install ...@v1.2.3`, else the VCS revision.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return "dev"
}

// Logger is the Function's logger.
func (f *Function) Logger() *slog.Logger { return f.logger }

// Start reads the configuration from env (variable name to value, as
// func's runtime passes it) and builds the service.
func (f *Function) Start(ctx context.Context, env map[string]string) error {
	cfg, err := config.Load(env)
	if err != nil {
		return err
	}
	return f.StartConfig(ctx, cfg)
}

// StartConfig builds the service from cfg. It does not wait for the
// database: readiness reports it, and requests get 503 until it answers.
func (f *Function) StartConfig(ctx context.Context, cfg config.Config) error {
	return f.StartTelemetry(ctx, cfg, telemetry.Options{})
}

// StartTelemetry is StartConfig with extra telemetry options, such as a
// test's in-memory span processor or metric reader, added to the ones cfg
// gives.
func (f *Function) StartTelemetry(ctx context.Context, cfg config.Config, extra telemetry.Options) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		return errors.New("app: already started")
	}
	f.level.Set(cfg.LogLevel)

	topts, err := cfg.Telemetry.Options(f.Version)
	if err != nil {
		return err
	}
	topts.SpanProcessor, topts.Readers = extra.SpanProcessor, extra.Readers
	tel, err := telemetry.New(ctx, topts)
	if err != nil {
		return err
	}
	// The SDK reports failed exports only to its process-wide handler,
	// which would print plain text: route them to the JSON log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		f.logger.Warn("telemetry export failed", slog.String("error", err.Error()))
	}))
	db := store.Open(cfg.Database.Options(), "users")
	var side []*http.Server
	defer func() {
		if err != nil {
			for _, s := range side {
				_ = s.Close()
			}
			err = errors.Join(err, db.Close(), tel.Shutdown(context.WithoutCancel(ctx)))
		}
	}()
	var hook bun.QueryHook
	if tel.Tracing {
		// Spans for the statements only when they are recorded: bun runs
		// hooks on every query, and this one walks the stack for the caller.
		// Its metrics (a histogram in milliseconds and the pool's stats,
		// which ObserveDB reports under the conventions' names) stay off.
		hook = bunotel.NewQueryHook(
			bunotel.WithTracerProvider(tel.TracerProvider),
			bunotel.WithMeterProvider(noopmetric.NewMeterProvider()))
		db.AddQueryHook(hook)
	}
	if err := telemetry.ObserveDB(tel.MeterProvider, db.DB); err != nil {
		return err
	}
	runner, err := migrations.New(db)
	if err != nil {
		return err
	}
	// The store's bound is also the request's for every route but the
	// list: one timer per request instead of two (docs/performance.md).
	bound := min(cfg.Database.QueryTimeout, cfg.HTTP.RequestTimeout)
	// A retry whose key's first request is still running waits for it up
	// to half the bound, so it gets a 409 before its own time is up.
	users := store.New(db, bound).WithIdempotency(store.Idempotency{TTL: cfg.IdempotencyKeyTTL, Wait: bound / 2})
	if hook != nil {
		users = users.WithQueryHook(hook)
	}
	checker := health.NewChecker(func(ctx context.Context) error {
		err := runner.Current(ctx)
		if errors.Is(err, migrations.ErrPending) {
			return health.NotReady("database schema is not at the latest migration; run `users migrate up`", err)
		}
		return err
	}, readinessTTL, time.Second)
	if f.drained.Load() {
		checker.Drain()
	}
	if err := telemetry.ObserveReady(tel.MeterProvider, func(ctx context.Context) bool { return checker.Check(ctx) == nil }); err != nil {
		return err
	}
	metrics, err := server.NewMetrics(tel.MeterProvider)
	if err != nil {
		return err
	}
	var tp trace.TracerProvider
	if tel.Tracing {
		tp = tel.TracerProvider
	}
	ev, err := events.New(users, f.logger, tp, tel.MeterProvider)
	if err != nil {
		return err
	}

	rt := server.NewRouter()
	// REQUEST_TIMEOUT bounds a request's work. The store applies it (with
	// POSTGRES_QUERY_TIMEOUT, the sooner) to each call, which is all the
	// work of every route but the list; the list's stream gets it whole.
	// The probes bound their own check.
	rt.Handle(http.MethodGet, "/user", server.Deadline(list.New(users, f.logger), cfg.HTTP.RequestTimeout))
	rt.Handle(http.MethodPost, "/user", create.New(users, f.logger))
	rt.Handle(http.MethodGet, "/user/{id}", get.New(users, f.logger))
	rt.Handle(http.MethodPost, "/{$}", ev)
	rt.Handle(http.MethodGet, "/openapi.yaml", api.Handler())
	if cfg.Telemetry.MetricsAddr == "" {
		rt.Handle(http.MethodGet, MetricsPath, tel.Metrics)
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET "+MetricsPath, tel.Metrics)
		s, err := f.listen(cfg.Telemetry.MetricsAddr, "metrics", mux)
		if err != nil {
			return err
		}
		side = append(side, s)
	}
	if cfg.Telemetry.DebugAddr != "" {
		s, err := f.listen(debugAddr(cfg.Telemetry.DebugAddr), "debug", pprofHandler())
		if err != nil {
			return err
		}
		side = append(side, s)
	}
	live, ready := probes.Liveness(), probes.Readiness(checker)
	for _, p := range LivenessPaths() {
		rt.Handle(http.MethodGet, p, live)
	}
	for _, p := range ReadinessPaths() {
		rt.Handle(http.MethodGet, p, ready)
	}
	h := server.Middleware(rt, f.logger, metrics)
	if tel.Tracing {
		h = otelhttp.NewHandler(h, "users",
			otelhttp.WithTracerProvider(tel.TracerProvider),
			otelhttp.WithPropagators(tel.Propagator),
			// Middleware records the metrics, with bounded labels.
			otelhttp.WithMeterProvider(noopmetric.NewMeterProvider()),
			// Renamed after the route once routed; until then the
			// conventions' name for a request without one.
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
			// Probes come every few seconds from several sources; their
			// traces would bury the requests'. They are still counted.
			otelhttp.WithFilter(func(r *http.Request) bool { return !isProbe(r.URL.Path) }),
		)
	}

	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepKeys(sweepCtx, users, f.logger)
	}()
	f.stopSweep = func() { stopSweep(); <-swept }

	f.db, f.checker, f.router, f.tel, f.side = db, checker, rt, tel, side
	f.handler.Store(&h)
	f.logger.Info("started", slog.Any("database", cfg.Database),
		slog.String("traces_to", topts.TracesURL), slog.String("metrics_to", topts.MetricsURL))
	return nil
}

// sweepEvery is how often expired idempotency keys are deleted; keys past
// their TTL are ignored whether deleted or not, so this only bounds the
// table's size.
const sweepEvery = time.Minute

// sweepKeys deletes expired idempotency keys every sweepEvery until ctx
// ends, in batches of 1000 that each take one connection for one short
// statement, so requests never wait behind it for long. Every pod runs it;
// the batches skip rows another pod is deleting.
func sweepKeys(ctx context.Context, users *store.Store, logger *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := users.DeleteExpiredKeys(ctx, 1000)
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("deleting expired idempotency keys failed", slog.String("error", err.Error()))
				}
				break
			}
			if n < 1000 {
				break
			}
		}
	}
}

// MetricsPath is where the Prometheus metrics are served.
const MetricsPath = "/metrics"

func isProbe(path string) bool {
	return slices.Contains(LivenessPaths(), path) || slices.Contains(ReadinessPaths(), path)
}

// listen serves h on addr in the background until Stop.
func (f *Function) listen(addr, what string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app: %s listener: %w", what, err)
	}
	s := server.New(h, f.logger)
	go func() {
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			f.logger.Error(what+" listener failed", slog.String("error", err.Error()))
		}
	}()
	f.logger.Info("listening", slog.String("addr", ln.Addr().String()), slog.String("for", what))
	return s, nil
}

// debugAddr binds a bare port to loopback: profiles show the service's
// internals and cost CPU, so reaching them takes kubectl port-forward.
func debugAddr(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// pprofHandler serves net/http/pprof's pages on a mux of its own; the
// package's init registers them on http.DefaultServeMux, which nothing
// here serves.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// readinessTTL is how long a readiness answer is reused. With the 1 s
// check timeout, an outage shows as 503 within TTL + 1 s = 1.5 s, inside
// the 2 s a probe period allows.
const readinessTTL = 500 * time.Millisecond

// LivenessPaths are the liveness probe's paths: the original
// application's, and Knative func's default.
func LivenessPaths() []string { return []string{"/-/healthy", "/health/liveness"} }

// ReadinessPaths are the readiness probe's paths, as LivenessPaths.
func ReadinessPaths() []string { return []string{"/-/ready", "/health/readiness"} }

// Routes lists the routed path patterns and their methods.
func (f *Function) Routes() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.router == nil {
		return nil
	}
	return f.router.Patterns()
}

// Handle serves a request; before Start it answers 503.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	if h := f.handler.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	problem.Write(w, problem.New(http.StatusServiceUnavailable, "starting"))
}

// ServeHTTP makes Function an http.Handler.
func (f *Function) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.Handle(w, r) }

// Ready reports whether the service can take traffic.
func (f *Function) Ready(ctx context.Context) (bool, error) {
	f.mu.Lock()
	c := f.checker
	f.mu.Unlock()
	if c == nil {
		return false, nil
	}
	return c.Check(ctx) == nil, nil
}

// Alive reports whether the process can serve; it never asks the database.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }

// Drain turns readiness off for good; called on SIGTERM.
func (f *Function) Drain() {
	f.drained.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.checker != nil {
		f.checker.Drain()
	}
}

// Stop drains, closes the database pool and the side listeners, and
// flushes the telemetry.
func (f *Function) Stop(ctx context.Context) error {
	f.Drain()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	f.stopSweep()
	err := f.db.Close()
	for _, s := range f.side {
		err = errors.Join(err, s.Close())
	}
	// Spans still buffered go out now; a stopping pod has little time.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// A collector that is down loses the last batch; that is no reason to
	// report the shutdown as failed.
	if terr := f.tel.Shutdown(sctx); terr != nil {
		f.logger.Warn("telemetry not flushed", slog.String("error", terr.Error()))
	}
	f.logger.Info("stopped")
	return err
}
