package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// Metrics records the requests Middleware serves: count and duration by
// route pattern, method and status class (http.server.request.duration).
// Every label is bounded: the route is the pattern that matched, never
// the path; an unknown method counts as _OTHER, as the HTTP conventions
// say; the status is its class.
type Metrics struct {
	duration metric.Float64Histogram
	// sets caches one attribute set per label combination, so a request
	// costs a map read, not a set built and sorted. (A sync.Map would box
	// the key, an allocation per request.) The set is kept as the slice
	// Record's variadic parameter takes: a slice built per call escapes
	// through the interface, an allocation per request.
	mu   sync.RWMutex
	sets map[labels][]metric.RecordOption
}

type labels struct {
	method, route string
	class         int
}

// NewMetrics returns the request metrics recorded through mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	h, err := mp.Meter("github.com/example/users/pkg/server").Float64Histogram("http.server.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of HTTP server requests."))
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	return &Metrics{duration: h, sets: map[labels][]metric.RecordOption{}}, nil
}

func (m *Metrics) record(ctx context.Context, method, route string, status int, d time.Duration) {
	l := labels{method: knownMethod(method), route: route, class: status / 100}
	m.mu.RLock()
	opts, ok := m.sets[l]
	m.mu.RUnlock()
	if !ok {
		kv := []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String(l.method),
			attribute.String("http.response.status_class", strconv.Itoa(l.class)+"xx"),
		}
		if route != "" {
			kv = append(kv, semconv.HTTPRoute(route))
		}
		opts = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
		m.mu.Lock()
		m.sets[l] = opts
		m.mu.Unlock()
	}
	m.duration.Record(ctx, d.Seconds(), opts...)
}

func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
