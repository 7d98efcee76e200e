// Package health decides whether the service is ready for traffic.
package health

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// NotReadyError says why the service is not ready. Reason is safe to show
// a client; Err, the cause, is for logs.
type NotReadyError struct {
	reason string
	Err    error
}

func (e *NotReadyError) Error() string {
	if e.Err == nil {
		return e.reason
	}
	return e.reason + ": " + e.Err.Error()
}

// Reason is the client-safe message.
func (e *NotReadyError) Reason() string { return e.reason }

func (e *NotReadyError) Unwrap() error { return e.Err }

// Checker caches a readiness check so frequent probes from many places
// (kubelet, queue-proxy, load balancers) cost at most one database round
// trip per TTL, and turns not-ready for good once draining starts.
type Checker struct {
	check    func(context.Context) error
	ttl      time.Duration
	timeout  time.Duration
	now      func() time.Time
	draining atomic.Bool

	mu     sync.Mutex
	expiry time.Time
	last   error
}

// NewChecker returns a Checker over check. check's error becomes the
// NotReadyError's cause; if check returns a *NotReadyError it is kept.
func NewChecker(check func(context.Context) error, ttl, timeout time.Duration) *Checker {
	return &Checker{check: check, ttl: ttl, timeout: timeout, now: time.Now}
}

// Drain makes every later Check fail: the process is shutting down and
// load balancers should stop sending it new work.
func (c *Checker) Drain() { c.draining.Store(true) }

var errDraining = &NotReadyError{reason: "shutting down"}

// Check returns nil when ready and a *NotReadyError otherwise.
func (c *Checker) Check(ctx context.Context) error {
	if c.draining.Load() {
		return errDraining
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now().Before(c.expiry) {
		return c.last
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	err := c.check(cctx)
	if err != nil {
		if _, ok := err.(*NotReadyError); !ok {
			err = &NotReadyError{reason: "database unreachable", Err: err}
		}
	}
	c.last, c.expiry = err, c.now().Add(c.ttl)
	return err
}

// NotReady returns a *NotReadyError with a client-safe reason.
func NotReady(reason string, cause error) error {
	return &NotReadyError{reason: reason, Err: cause}
}
