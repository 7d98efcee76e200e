// Package probes serves the liveness and readiness endpoints.
package probes

import (
	"context"
	"errors"
	"net/http"

	"github.com/example/users/pkg/problem"
)

// Checker reports whether the service can serve traffic.
type Checker interface {
	Check(ctx context.Context) error
}

// Reason is implemented by errors whose message is safe to show a client.
type Reason interface {
	Reason() string
}

var ok = []byte("{}\n")

func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(ok)
}

// Liveness answers 200 {} whenever the process can serve HTTP. It never
// touches the database: restarting a healthy pod does not bring a
// database back, and a database outage would restart every pod at once.
func Liveness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeOK(w) })
}

// Readiness answers 200 {} when c says the service is ready and 503 with
// the reason otherwise.
func Readiness(c Checker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := c.Check(r.Context())
		if err == nil {
			writeOK(w)
			return
		}
		detail := "not ready"
		var rs Reason
		if errors.As(err, &rs) {
			detail = rs.Reason()
		}
		w.Header().Set("Cache-Control", "no-store")
		problem.Write(w, problem.New(http.StatusServiceUnavailable, detail))
	})
}
