package telemetry

import (
	"context"
	"database/sql"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ObserveDB reports db's pool on every collection, under the names of
// OpenTelemetry's database-client conventions where they have one:
// connections by state, the pool's size, and the waits for a connection
// (sql.DBStats counts them; a rising wait count says the pool is too small
// for the load).
func ObserveDB(mp metric.MeterProvider, db *sql.DB) error {
	m := mp.Meter("github.com/example/users/pkg/telemetry")
	count, err := m.Int64ObservableUpDownCounter("db.client.connection.count",
		metric.WithUnit("{connection}"), metric.WithDescription("Connections in the pool, by state."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	maxConns, err := m.Int64ObservableUpDownCounter("db.client.connection.max",
		metric.WithUnit("{connection}"), metric.WithDescription("The pool's size."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	waits, err := m.Int64ObservableCounter("db.client.connection.waits",
		metric.WithUnit("{wait}"), metric.WithDescription("Requests for a connection that had to wait for one."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	waited, err := m.Float64ObservableCounter("db.client.connection.wait_duration",
		metric.WithUnit("s"), metric.WithDescription("Time spent waiting for a connection, in all."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	idle := metric.WithAttributeSet(attribute.NewSet(attribute.String("db.client.connection.state", "idle")))
	used := metric.WithAttributeSet(attribute.NewSet(attribute.String("db.client.connection.state", "used")))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := db.Stats()
		o.ObserveInt64(count, int64(s.Idle), idle)
		o.ObserveInt64(count, int64(s.InUse), used)
		o.ObserveInt64(maxConns, int64(s.MaxOpenConnections))
		o.ObserveInt64(waits, s.WaitCount)
		o.ObserveFloat64(waited, s.WaitDuration.Seconds())
		return nil
	}, count, maxConns, waits, waited)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// ObserveReady reports ready (1 or 0) as users.ready on every
// collection, so a scrape sees what a readiness probe would.
func ObserveReady(mp metric.MeterProvider, ready func(context.Context) bool) error {
	m := mp.Meter("github.com/example/users/pkg/telemetry")
	g, err := m.Int64ObservableGauge("users.ready",
		// No unit: "1" would make Prometheus's name users_ready_ratio.
		metric.WithDescription("1 while the instance reports ready, 0 otherwise."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		v := int64(0)
		if ready(ctx) {
			v = 1
		}
		o.ObserveInt64(g, v)
		return nil
	}, g)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}
