// Package server wires handlers into an HTTP server: routing with
// problem-details 404 and 405 answers, request middleware, and a graceful
// shutdown.
package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/example/users/pkg/problem"
)

// Router is an http.ServeMux that answers unknown paths with a 404
// problem and known paths with a wrong method with a 405 problem and an
// Allow header (ServeMux's own answers are plain text).
type Router struct {
	mux   *http.ServeMux
	allow map[string][]string
}

// NewRouter returns an empty Router.
func NewRouter() *Router {
	rt := &Router{mux: http.NewServeMux(), allow: map[string][]string{}}
	rt.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		problem.Write(w, problem.New(http.StatusNotFound, "no such endpoint"))
	})
	return rt
}

// Handle routes method requests for pattern (a ServeMux path pattern) to h.
func (rt *Router) Handle(method, pattern string, h http.Handler) {
	rt.mux.Handle(method+" "+pattern, h)
	methods, known := rt.allow[pattern]
	methods = append(methods, method)
	if method == http.MethodGet {
		methods = append(methods, http.MethodHead)
	}
	slices.Sort(methods)
	rt.allow[pattern] = methods
	if known {
		return
	}
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		allow := strings.Join(rt.allow[pattern], ", ")
		w.Header().Set("Allow", allow)
		problem.Write(w, problem.New(http.StatusMethodNotAllowed, r.Method+" is not allowed here; use "+allow))
	})
}

// route is the path pattern the Router's ServeMux matched for r (which
// it records in r.Pattern), as the HTTP conventions' http.route has it:
// without the method, and empty for an unknown path, which only the
// Router's own catch-all "/" matches.
func route(r *http.Request) string {
	_, p, ok := strings.Cut(r.Pattern, " ")
	if !ok {
		p = r.Pattern
	}
	if p == "/" {
		return ""
	}
	return p
}

// Patterns lists the routed patterns with their methods, for tests and
// documentation that must match the code.
func (rt *Router) Patterns() map[string][]string {
	out := make(map[string][]string, len(rt.allow))
	for p, m := range rt.allow {
		out[p] = slices.Clone(m)
	}
	return out
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.mux.ServeHTTP(w, r)
}
