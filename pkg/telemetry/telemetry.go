// Package telemetry sets up OpenTelemetry for the service: a tracer
// provider that exports over OTLP only when an endpoint is configured, a
// meter provider read by Prometheus at /metrics (and pushed over OTLP
// when configured), the Go runtime's metrics, and the W3C trace-context
// propagator. Nothing here is global: the composition root hands the
// providers to whatever records.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options say what to record and where to send it.
type Options struct {
	ServiceName string
	Version     string
	// Attributes are added to the resource (OTEL_RESOURCE_ATTRIBUTES and
	// Knative's K_* names); ServiceName and Version win over them.
	Attributes map[string]string

	// TracesURL, when set, exports spans over OTLP/HTTP to it; the
	// exporter reads the rest of its OTEL_EXPORTER_OTLP_* settings
	// (headers, timeout, certificates) itself. Empty, the tracer provider
	// is a no-op and the HTTP and database instrumentation is not
	// installed.
	TracesURL string
	// Sampler samples root spans; nil samples all, parent-based.
	Sampler sdktrace.Sampler
	// MetricsURL, when set, pushes metrics there over OTLP/HTTP as well
	// as serving them.
	MetricsURL string

	// SpanProcessor, if set, turns tracing on with it instead of the OTLP
	// exporter; tests pass an in-memory one.
	SpanProcessor sdktrace.SpanProcessor
	// Readers are further metric readers, such as a test's manual reader.
	Readers []sdkmetric.Reader
}

// Telemetry holds the providers and the /metrics handler.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Tracing reports whether spans are recorded at all; when false the
	// callers skip their instrumentation so it costs nothing.
	Tracing bool
	// Metrics serves the meter provider's metrics in Prometheus text format.
	Metrics http.Handler

	shutdown []func(context.Context) error
}

// DurationBounds are the bucket bounds of every duration histogram, in
// seconds: the ones the HTTP semantic conventions recommend, trimmed to
// where SLO thresholds sit. A latency objective can only be measured at a
// bound, so the chart's alert thresholds are checked against these.
func DurationBounds() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// New builds the providers. Call Shutdown to flush them.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	res, err := newResource(o)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Propagator: propagation.TraceContext{}}

	reg := prometheus.NewRegistry()
	prom, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(prom),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: DurationBounds()}},
		)),
	}
	for _, r := range o.Readers {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	if o.MetricsURL != "" {
		exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(o.MetricsURL))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		// The interval comes from OTEL_METRIC_EXPORT_INTERVAL.
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry: runtime metrics: %w", err), mp.Shutdown(ctx))
	}

	sp := o.SpanProcessor
	if sp == nil && o.TracesURL != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.TracesURL))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("telemetry: OTLP trace exporter: %w", err), mp.Shutdown(ctx))
		}
		sp = sdktrace.NewBatchSpanProcessor(exp)
	}
	if sp == nil {
		t.TracerProvider = noop.NewTracerProvider()
		return t, nil
	}
	sampler := o.Sampler
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
		sdktrace.WithSpanProcessor(sp),
	)
	t.TracerProvider, t.Tracing = tp, true
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Shutdown flushes what is buffered and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var err error
	for _, f := range t.shutdown {
		err = errors.Join(err, f(ctx))
	}
	return err
}

func newResource(o Options) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, len(o.Attributes)+4)
	for k, v := range o.Attributes {
		attrs = append(attrs, attribute.String(k, v))
	}
	attrs = append(attrs, semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version))
	// The pod's name under Kubernetes: which instance served.
	if host, err := os.Hostname(); err == nil {
		attrs = append(attrs, semconv.ServiceInstanceID(host))
	}
	// Not resource.Default: it reads OTEL_* from the process environment,
	// where the configuration passed in is what counts.
	res, err := resource.New(context.Background(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}
