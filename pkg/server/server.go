package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// New returns an http.Server for h with the timeouts a public listener
// needs: slow-header clients are cut off, idle keep-alives are reaped.
// There is no WriteTimeout: the user list streams and may legitimately
// take long; the request context's deadline bounds the work instead.
func New(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Shutdown says how Serve stops once its context is done.
type Shutdown struct {
	// DrainDelay keeps serving, readiness 503, so load balancers notice
	// before the listener closes.
	DrainDelay time.Duration
	// Timeout bounds the wait for requests in flight.
	Timeout time.Duration
}

// Serve serves on ln until ctx is done, then shuts down gracefully:
// drain is called (readiness turns 503), the server keeps serving for
// sd.DrainDelay so load balancers notice, then stops accepting and waits
// up to sd.Timeout for requests in flight.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, sd Shutdown, logger *slog.Logger, drain func()) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", slog.String("addr", ln.Addr().String()))

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	drain()
	logger.Info("draining", slog.Duration("delay", sd.DrainDelay))
	if sd.DrainDelay > 0 {
		t := time.NewTimer(sd.DrainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), sd.Timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}
