//go:build otelcol

package e2e

// TestOtelcol proves the service's OpenTelemetry export against a real
// OpenTelemetry Collector: the distribution in e2e/otelcol (the OTLP
// receiver and contrib's file exporter), which .ci/otelcol builds once and
// passes in as OTELCOL_BIN. The collector writes what it receives as OTLP
// JSON, one export request per line, and the test reads that with the
// standard library alone, so the service's go.mod gains no collector
// dependency. It needs PostgreSQL and Go (to build the users binary):
//
//	OTELCOL_BIN=~/.cache/users-ci/otelcol-0.161.0/otelcol go test -tags otelcol -count=1 -v ./e2e/

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
)

// What the test sends: a user by POST /user, and two by CloudEvents in
// binary mode, each with a W3C trace context the service must continue:
// the first carries it both as the distributed-tracing extension
// (ce-traceparent) and as the HTTP traceparent header, the second only as
// the extension.
const ocUsername, ocEmail = "otel_user", "otel_user@example.com"

type ocEvent struct {
	id, username, email, traceID, parentSpanID string
	header                                     bool // also as the HTTP traceparent header
}

func (e ocEvent) traceparent() string { return "00-" + e.traceID + "-" + e.parentSpanID + "-01" }

var ocEvents = []ocEvent{
	{"otelcol-1", "otel_event", "otel_event@example.com", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
	{"otelcol-2", "otel_event2", "otel_event2@example.com", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", false},
}

// ocEventRoute is the route the service reports for CloudEvents: the
// ServeMux pattern it routes them by (pkg/app), "/{$}" for exactly "/".
const ocEventRoute = "/{$}"

// OTLP span kinds as the JSON encoding writes them (an enum number).
const ocSpanKindServer = 2

func TestOtelcol(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("TestOtelcol took %s", time.Since(start).Round(time.Millisecond)) }()
	collectorBin := os.Getenv("OTELCOL_BIN")
	if collectorBin == "" {
		t.Fatal("OTELCOL_BIN is not set: run .ci/otelcol, which builds the collector in e2e/otelcol and sets it")
	}

	// The collector, on a free loopback port, writing each signal to a file.
	dir := t.TempDir()
	otlpPort := loopback.FreePort(t)
	tracesFile := filepath.Join(dir, "traces.jsonl")
	metricsFile := filepath.Join(dir, "metrics.jsonl")
	cfgFile := filepath.Join(dir, "otelcol.yaml")
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file/traces:
    path: %s
  file/metrics:
    path: %s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
`, otlpPort, tracesFile, metricsFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	col := startProcess(t, collectorBin, "", nil, "--config", cfgFile)
	ocWaitDial(t, col, "127.0.0.1:"+strconv.Itoa(otlpPort), 30*time.Second)
	t.Logf("collector listening on 127.0.0.1:%d %s after exec", otlpPort, time.Since(t0).Round(time.Millisecond))

	// The service, migrated first, exporting to it.
	bin := testenv.Binary(t)
	db := pgtest.New(t)
	// The test's own environment, less any OTEL_* setting of the caller's
	// (OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none, … would defeat it).
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	for k, v := range pgtest.Env(db) {
		env = append(env, k+"="+v)
	}
	migrate := exec.Command(bin, "migrate", "up")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("users migrate up: %v\n%s", err, out)
	}
	port := loopback.FreePort(t)
	env = append(env,
		"PORT="+strconv.Itoa(port),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:"+strconv.Itoa(otlpPort),
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=users",
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
	)
	svc := startProcess(t, bin, "", env, "serve")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	t0 = time.Now()
	ocWaitStatus(t, svc, base+"/-/ready", http.StatusOK, 30*time.Second)
	t.Logf("users answered /-/ready %s after exec", time.Since(t0).Round(time.Millisecond))

	// What the assertions below count: one request per route.
	code, body := ocDo(t, http.MethodPost, base+"/user", map[string]string{"Content-Type": "application/json"},
		fmt.Sprintf(`{"username":%q,"email":%q}`, ocUsername, ocEmail))
	if code != http.StatusCreated {
		t.Fatalf("POST /user: %d %s, want 201", code, body)
	}
	var created struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.ID == 0 {
		t.Fatalf("POST /user body %s: %v", body, err)
	}
	if code, body := ocDo(t, http.MethodGet, base+"/user/"+strconv.FormatInt(created.ID, 10), nil, ""); code != http.StatusOK {
		t.Fatalf("GET /user/%d: %d %s, want 200", created.ID, code, body)
	}
	if code, body := ocDo(t, http.MethodGet, base+"/user", nil, ""); code != http.StatusOK {
		t.Fatalf("GET /user: %d %s, want 200", code, body)
	}
	for _, e := range ocEvents {
		h := map[string]string{
			"Ce-Specversion": "1.0",
			"Ce-Id":          e.id,
			"Ce-Source":      "/tests/otelcol",
			"Ce-Type":        "com.example.user.create",
			"Ce-Traceparent": e.traceparent(),
			"Content-Type":   "application/json",
		}
		if e.header {
			h["Traceparent"] = e.traceparent()
		}
		code, body := ocDo(t, http.MethodPost, base+"/", h, fmt.Sprintf(`{"username":%q,"email":%q}`, e.username, e.email))
		if code != http.StatusOK {
			t.Fatalf("CloudEvent %s: %d %s, want 200", e.id, code, body)
		}
	}

	// OTEL_METRIC_EXPORT_INTERVAL=1000: a periodic export reaches the file
	// (the file exporter flushes every second) well before shutdown.
	t0 = time.Now()
	for ocCountLines(metricsFile) == 0 {
		if time.Since(t0) > 15*time.Second {
			t.Fatalf("no periodic metrics export within %s of the requests", time.Since(t0).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("first periodic metrics export on file %s after the requests", time.Since(t0).Round(time.Millisecond))

	// SIGTERM: the service flushes its spans and a last metrics export on
	// the way out; then the collector, which flushes its files.
	ocStop(t, svc, 30*time.Second)
	ocStop(t, col, 30*time.Second)
	if n := ocCountLines(metricsFile); n < 2 {
		t.Errorf("%d metrics export requests, want a periodic one and the one at shutdown", n)
	}
	ocCheck(t, tracesFile, metricsFile)
}

// ocCountLines counts the non-empty lines in path, 0 if it is missing.
func ocCountLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			n++
		}
	}
	return n
}

// ocCheck asserts what the collector wrote for the requests TestOtelcol
// sent.
func ocCheck(t *testing.T, tracesFile, metricsFile string) {
	traces := ocReadLines(t, tracesFile)
	metrics := ocReadLines(t, metricsFile)
	t.Logf("collector wrote %d trace and %d metric export requests", len(traces), len(metrics))

	spans, traceResources := ocSpans(t, traces)
	points, metricResources := ocMetrics(t, metrics)

	t.Run("resource", func(t *testing.T) {
		if len(traceResources) == 0 || len(metricResources) == 0 {
			t.Fatalf("resources: %d with spans, %d with metrics, want both", len(traceResources), len(metricResources))
		}
		for _, r := range append(traceResources, metricResources...) {
			if got := r["service.name"]; got != "users" {
				t.Errorf("resource service.name = %q, want users (resource %v)", got, r)
			}
			if r["service.version"] == "" {
				t.Errorf("resource has no service.version: %v", r)
			}
		}
		t.Logf("resource: service.name=%s service.version=%s", traceResources[0]["service.name"], traceResources[0]["service.version"])
	})

	t.Run("POST /user span", func(t *testing.T) {
		var server []ocSpan
		for _, s := range spans {
			if s.Name == "POST /user" {
				server = append(server, s)
			}
		}
		if len(server) != 1 {
			t.Fatalf("%d spans named POST /user, want 1; span names: %v", len(server), ocNames(spans))
		}
		root := server[0]
		if root.Kind != ocSpanKindServer {
			t.Errorf("POST /user span kind = %d, want %d (SERVER)", root.Kind, ocSpanKindServer)
		}
		var dbSpans []ocSpan
		for _, s := range ocDescendants(spans, root) {
			if s.Attrs["db.system"] == "postgresql" {
				dbSpans = append(dbSpans, s)
			}
		}
		if len(dbSpans) == 0 {
			t.Fatalf("no span under POST /user has db.system=postgresql; its descendants: %v", ocNames(ocDescendants(spans, root)))
		}
		for _, s := range dbSpans {
			stmt := s.Attrs["db.statement"] + s.Attrs["db.query.text"]
			if stmt == "" {
				t.Errorf("database span %q has no db.statement: %v", s.Name, s.Attrs)
			}
			for k, v := range s.Attrs {
				if strings.Contains(v, ocUsername) || strings.Contains(v, ocEmail) {
					t.Errorf("database span %q attribute %s carries the request's values: %q", s.Name, k, v)
				}
			}
			direct := s.ParentSpanID == root.SpanID
			t.Logf("database span %q (direct child: %v): %s", s.Name, direct, stmt)
		}
	})

	t.Run("GET /user/{id} span", func(t *testing.T) {
		for _, s := range spans {
			if s.Name == "GET /user/{id}" && s.Kind == ocSpanKindServer {
				return
			}
		}
		t.Errorf("no SERVER span named GET /user/{id}; span names: %v", ocNames(spans))
	})

	for _, e := range ocEvents {
		t.Run("CloudEvent "+e.id+" continues its traceparent", func(t *testing.T) {
			var inTrace, children []ocSpan
			for _, s := range spans {
				if s.TraceID == e.traceID {
					inTrace = append(inTrace, s)
					if s.ParentSpanID == e.parentSpanID {
						children = append(children, s)
					}
				}
			}
			if len(inTrace) == 0 {
				t.Fatalf("no span in trace %s; traces seen: %v", e.traceID, ocTraceIDs(spans))
			}
			if len(children) == 0 {
				t.Fatalf("no span in trace %s has parent %s: %v", e.traceID, e.parentSpanID, inTrace)
			}
			for _, c := range children {
				t.Logf("child of the traceparent: %q kind %d", c.Name, c.Kind)
				for _, s := range append(ocDescendants(spans, c), c) {
					for k, v := range s.Attrs {
						if strings.Contains(v, e.username) || strings.Contains(v, e.email) {
							t.Errorf("span %q attribute %s carries the event's values: %q", s.Name, k, v)
						}
					}
				}
			}
			t.Logf("%d spans in trace %s: %v", len(inTrace), e.traceID, ocNames(inTrace))
		})
	}

	t.Run("metrics", func(t *testing.T) {
		names := map[string]bool{}
		for _, p := range points {
			names[p.Metric] = true
		}
		t.Logf("metrics exported: %v", ocKeys(names))
		for _, want := range []string{"http.server.request.duration", "users.cloudevents.deliveries", "db.client.connection.count", "users.ready"} {
			if !names[want] {
				t.Errorf("no %s among the exported metrics", want)
			}
		}
		runtime := false
		for n := range names {
			runtime = runtime || strings.HasPrefix(n, "go.") || strings.HasPrefix(n, "process.runtime.go.")
		}
		if !runtime {
			t.Errorf("no Go runtime metric (go.* or process.runtime.go.*) among %v", ocKeys(names))
		}

		// http.server.request.duration: one request per route sent above.
		for _, want := range []struct {
			method, route, class string
		}{
			{"POST", "/user", "2xx"},
			{"GET", "/user/{id}", "2xx"},
			{"GET", "/user", "2xx"},
		} {
			n, ok := ocTotal(points, "http.server.request.duration", map[string]string{
				"http.request.method":        want.method,
				"http.route":                 want.route,
				"http.response.status_class": want.class,
			})
			if !ok || n != 1 {
				t.Errorf("http.server.request.duration count for %s %s %s = %v (found: %v), want 1", want.method, want.route, want.class, n, ok)
			}
		}
		n, ok := ocTotal(points, "http.server.request.duration", map[string]string{
			"http.request.method":        "POST",
			"http.route":                 ocEventRoute,
			"http.response.status_class": "2xx",
		})
		if !ok || n != float64(len(ocEvents)) {
			t.Errorf("http.server.request.duration count for POST %s 2xx = %v (found: %v), want %d", ocEventRoute, n, ok, len(ocEvents))
		}
		for _, p := range points {
			if p.Metric == "http.server.request.duration" && p.Kind != "histogram" {
				t.Errorf("http.server.request.duration is a %s, want a histogram", p.Kind)
				break
			}
		}
		var deliveries float64
		for _, p := range ocLatest(points, "users.cloudevents.deliveries") {
			if p.Attrs["outcome"] == "" {
				t.Errorf("users.cloudevents.deliveries point without outcome: %v", p.Attrs)
			}
			deliveries += p.Value
		}
		if deliveries != float64(len(ocEvents)) {
			t.Errorf("users.cloudevents.deliveries total = %v, want %d", deliveries, len(ocEvents))
		}
	})
}

// ---- the processes

// ocStop sends SIGTERM and requires a clean exit within timeout.
func ocStop(t *testing.T, p *process, timeout time.Duration) {
	t.Helper()
	name := filepath.Base(p.cmd.Path)
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", name, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of SIGTERM", name, timeout)
	}
	if p.err != nil {
		t.Fatalf("%s after SIGTERM: %v\n%s", name, p.err, p.logs.String())
	}
	t.Logf("%s exited 0 %s after SIGTERM", name, time.Since(t0).Round(time.Millisecond))
}

func ocWaitDial(t *testing.T, p *process, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before listening on %s:\n%s", filepath.Base(p.cmd.Path), p.err, addr, p.logs.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s within %s:\n%s", addr, within, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ocWaitStatus(t *testing.T, p *process, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		resp, err := ocClient.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before %s answered %d; last: %s", filepath.Base(p.cmd.Path), p.err, url, want, last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within %s; last: %s", url, want, within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var ocClient = &http.Client{Timeout: 10 * time.Second}

func ocDo(t *testing.T, method, url string, headers map[string]string, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := ocClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// ---- the file exporter's OTLP JSON

// ocReadLines returns the file's lines, each one export request.
func ocReadLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the collector wrote no %s: %v", filepath.Base(path), err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, bytes.Clone(l))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// otlpAnyValue is OTLP JSON's AnyValue; integers are strings there.
type otlpAnyValue struct {
	StringValue *string          `json:"stringValue"`
	BoolValue   *bool            `json:"boolValue"`
	IntValue    json.RawMessage  `json:"intValue"`
	DoubleValue *float64         `json:"doubleValue"`
	ArrayValue  *json.RawMessage `json:"arrayValue"`
}

func (v otlpAnyValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.IntValue != nil:
		return strings.Trim(string(v.IntValue), `"`)
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
	case v.ArrayValue != nil:
		return string(*v.ArrayValue)
	}
	return ""
}

type otlpKeyValue struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

func ocAttrs(kvs []otlpKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

type otlpResource struct {
	Attributes []otlpKeyValue `json:"attributes"`
}

type ocSpan struct {
	TraceID, SpanID, ParentSpanID, Name string
	Kind                                int
	Attrs                               map[string]string
}

func ocSpans(t *testing.T, lines [][]byte) ([]ocSpan, []map[string]string) {
	t.Helper()
	var spans []ocSpan
	var resources []map[string]string
	for i, l := range lines {
		var req struct {
			ResourceSpans []struct {
				Resource   otlpResource `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string         `json:"traceId"`
						SpanID       string         `json:"spanId"`
						ParentSpanID string         `json:"parentSpanId"`
						Name         string         `json:"name"`
						Kind         int            `json:"kind"`
						Attributes   []otlpKeyValue `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(l, &req); err != nil {
			t.Fatalf("traces line %d: %v", i+1, err)
		}
		for _, rs := range req.ResourceSpans {
			resources = append(resources, ocAttrs(rs.Resource.Attributes))
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, ocSpan{
						TraceID: strings.ToLower(s.TraceID), SpanID: strings.ToLower(s.SpanID),
						ParentSpanID: strings.ToLower(s.ParentSpanID), Name: s.Name, Kind: s.Kind,
						Attrs: ocAttrs(s.Attributes),
					})
				}
			}
		}
	}
	if len(spans) == 0 {
		t.Errorf("the collector received no spans (%d trace export requests)", len(lines))
	}
	return spans, resources
}

// ocDescendants returns the spans below root in its trace.
func ocDescendants(spans []ocSpan, root ocSpan) []ocSpan {
	var out []ocSpan
	parents := map[string]bool{root.SpanID: true}
	for grew := true; grew; {
		grew = false
		for _, s := range spans {
			if s.TraceID == root.TraceID && parents[s.ParentSpanID] && !parents[s.SpanID] {
				parents[s.SpanID] = true
				out = append(out, s)
				grew = true
			}
		}
	}
	return out
}

func ocNames(spans []ocSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}

func ocTraceIDs(spans []ocSpan) []string {
	seen := map[string]bool{}
	for _, s := range spans {
		seen[s.TraceID] = true
	}
	return ocKeys(seen)
}

func ocKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ocPoint is one data point: a histogram's count, or a sum's or gauge's
// value.
type ocPoint struct {
	Metric, Kind string
	Attrs        map[string]string
	Time         uint64
	Value        float64
	Delta        bool
}

// OTLP's AggregationTemporality: DELTA is 1, CUMULATIVE 2.
const otlpDelta = 1

func ocMetrics(t *testing.T, lines [][]byte) ([]ocPoint, []map[string]string) {
	t.Helper()
	type dataPoint struct {
		Attributes   []otlpKeyValue  `json:"attributes"`
		TimeUnixNano string          `json:"timeUnixNano"`
		Count        json.RawMessage `json:"count"`
		AsInt        json.RawMessage `json:"asInt"`
		AsDouble     *float64        `json:"asDouble"`
	}
	type series struct {
		DataPoints             []dataPoint `json:"dataPoints"`
		AggregationTemporality int         `json:"aggregationTemporality"`
	}
	var points []ocPoint
	var resources []map[string]string
	num := func(raw json.RawMessage) float64 {
		f, _ := strconv.ParseFloat(strings.Trim(string(raw), `"`), 64)
		return f
	}
	for i, l := range lines {
		var req struct {
			ResourceMetrics []struct {
				Resource     otlpResource `json:"resource"`
				ScopeMetrics []struct {
					Metrics []struct {
						Name      string  `json:"name"`
						Histogram *series `json:"histogram"`
						Sum       *series `json:"sum"`
						Gauge     *series `json:"gauge"`
					} `json:"metrics"`
				} `json:"scopeMetrics"`
			} `json:"resourceMetrics"`
		}
		if err := json.Unmarshal(l, &req); err != nil {
			t.Fatalf("metrics line %d: %v", i+1, err)
		}
		for _, rm := range req.ResourceMetrics {
			resources = append(resources, ocAttrs(rm.Resource.Attributes))
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					kind, s := "other", (*series)(nil)
					switch {
					case m.Histogram != nil:
						kind, s = "histogram", m.Histogram
					case m.Sum != nil:
						kind, s = "sum", m.Sum
					case m.Gauge != nil:
						kind, s = "gauge", m.Gauge
					}
					if s == nil {
						points = append(points, ocPoint{Metric: m.Name, Kind: kind})
						continue
					}
					for _, dp := range s.DataPoints {
						p := ocPoint{Metric: m.Name, Kind: kind, Attrs: ocAttrs(dp.Attributes), Delta: s.AggregationTemporality == otlpDelta}
						p.Time, _ = strconv.ParseUint(dp.TimeUnixNano, 10, 64)
						switch {
						case kind == "histogram":
							p.Value = num(dp.Count)
						case dp.AsDouble != nil:
							p.Value = *dp.AsDouble
						default:
							p.Value = num(dp.AsInt)
						}
						points = append(points, p)
					}
				}
			}
		}
	}
	if len(points) == 0 {
		t.Errorf("the collector received no metrics (%d metric export requests)", len(lines))
	}
	return points, resources
}

// ocLatest returns metric's points, one per attribute set: the last one
// exported for a cumulative series, the sum of all for a delta one.
func ocLatest(points []ocPoint, metric string) []ocPoint {
	byAttrs := map[string]ocPoint{}
	for _, p := range points {
		if p.Metric != metric {
			continue
		}
		keys := make([]string, 0, len(p.Attrs))
		for k, v := range p.Attrs {
			keys = append(keys, k+"="+v)
		}
		slices.Sort(keys)
		id := strings.Join(keys, ",")
		prev, ok := byAttrs[id]
		switch {
		case !ok:
			byAttrs[id] = p
		case p.Delta:
			prev.Value += p.Value
			byAttrs[id] = prev
		case p.Time >= prev.Time:
			byAttrs[id] = p
		}
	}
	out := make([]ocPoint, 0, len(byAttrs))
	for _, p := range byAttrs {
		out = append(out, p)
	}
	return out
}

// ocTotal adds up metric's latest values over the attribute sets that
// carry every attribute in match.
func ocTotal(points []ocPoint, metric string, match map[string]string) (float64, bool) {
	var total float64
	found := false
	for _, p := range ocLatest(points, metric) {
		ok := true
		for k, v := range match {
			ok = ok && p.Attrs[k] == v
		}
		if ok {
			total += p.Value
			found = true
		}
	}
	return total, found
}
