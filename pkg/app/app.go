// Package app is the composition root: it builds the store, the handlers
// and the router from a configuration, and exposes them as one function
// in the shape Knative's func runtime expects (Handle, Start, Stop, Ready,
// Alive). The `users` binary drives the same Function.
package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

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
)

// Function is the composed service.
type Function struct {
	logger *slog.Logger
	level  *slog.LevelVar

	handler atomic.Pointer[http.Handler]
	drained atomic.Bool

	mu      sync.Mutex
	db      *bun.DB
	checker *health.Checker
	router  *server.Router
}

// New returns a Function that logs JSON to w. It serves 503 until Start.
func New(w io.Writer) *Function {
	level := new(slog.LevelVar)
	return &Function{
		logger: slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})),
		level:  level,
	}
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
func (f *Function) StartConfig(_ context.Context, cfg config.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		return errors.New("app: already started")
	}
	f.level.Set(cfg.LogLevel)

	db := store.Open(cfg.Database.Options(), "users")
	runner, err := migrations.New(db)
	if err != nil {
		_ = db.Close()
		return err
	}
	users := store.New(db, cfg.Database.QueryTimeout)
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

	rt := server.NewRouter()
	rt.Handle(http.MethodGet, "/user", list.New(users, f.logger))
	rt.Handle(http.MethodPost, "/user", create.New(users, f.logger))
	rt.Handle(http.MethodGet, "/user/{id}", get.New(users, f.logger))
	rt.Handle(http.MethodPost, "/{$}", events.New(users, f.logger))
	live, ready := probes.Liveness(), probes.Readiness(checker)
	for _, p := range LivenessPaths() {
		rt.Handle(http.MethodGet, p, live)
	}
	for _, p := range ReadinessPaths() {
		rt.Handle(http.MethodGet, p, ready)
	}
	h := server.Middleware(rt, f.logger, cfg.HTTP.RequestTimeout)

	f.db, f.checker, f.router = db, checker, rt
	f.handler.Store(&h)
	f.logger.Info("started", slog.Any("database", cfg.Database))
	return nil
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

// Stop drains and closes the database pool.
func (f *Function) Stop(context.Context) error {
	f.Drain()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.logger.Info("stopped")
	return err
}
