package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/example/users/internal/loopback"
	"github.com/example/users/internal/pgtest"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/telemetry"
)

// observed is the service started with in-memory exporters.
type observed struct {
	url    string
	fn     *app.Function
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	logs   *testenv.Logs
}

// observe starts the service over a fresh database; env adds to its
// environment. With trace, spans go to an in-memory exporter.
func observe(t *testing.T, trace bool, env ...string) observed {
	t.Helper()
	_, dbcfg := testenv.DB(t)
	e := pgtest.Env(dbcfg)
	for i := 0; i+1 < len(env); i += 2 {
		e[env[i]] = env[i+1]
	}
	cfg, err := config.Load(e)
	if err != nil {
		t.Fatal(err)
	}
	o := observed{reader: sdkmetric.NewManualReader(), logs: &testenv.Logs{}}
	extra := telemetry.Options{Readers: []sdkmetric.Reader{o.reader}}
	if trace {
		o.spans = tracetest.NewInMemoryExporter()
		extra.SpanProcessor = sdktrace.NewSimpleSpanProcessor(o.spans)
	}
	o.fn = app.New(o.logs)
	if err := o.fn.StartTelemetry(context.Background(), cfg, extra); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.fn)
	t.Cleanup(func() {
		srv.Close()
		_ = o.fn.Stop(context.Background())
	})
	o.url = srv.URL
	return o
}

// do sends a request and returns the status and the response.
func do(t *testing.T, method, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestTracePostUser: one POST /user is a server span named by its route,
// with the HTTP conventions' attributes, whose child is bun's span of the
// INSERT, which shows the statement's shape and none of its values. The
// request's log lines name the server span.
func TestTracePostUser(t *testing.T) {
	o := observe(t, true)
	// The caller's trace: the server span must join it.
	caller := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	status, _, body := do(t, "POST", o.url+"/user", `{"username":"secret.name","email":"secret@example.com"}`, "traceparent", caller)
	if status != http.StatusCreated {
		t.Fatalf("POST /user = %d %s", status, body)
	}
	spans := o.spans.GetSpans()
	var server *tracetest.SpanStub
	for i := range spans {
		if spans[i].SpanKind == trace.SpanKindServer {
			if server != nil {
				t.Fatalf("two server spans: %q and %q", server.Name, spans[i].Name)
			}
			server = &spans[i]
		}
	}
	if server == nil {
		t.Fatalf("no server span among %d spans", len(spans))
	}
	if server.Name != "POST /user" {
		t.Errorf("server span named %q, want \"POST /user\"", server.Name)
	}
	if got := server.SpanContext.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("server span in trace %s, not the caller's", got)
	}
	if got := server.Parent.SpanID().String(); got != "00f067aa0ba902b7" || !server.Parent.IsRemote() {
		t.Errorf("server span's parent %s (remote %v), want the caller's 00f067aa0ba902b7", got, server.Parent.IsRemote())
	}
	attrs := attrMap(server.Attributes)
	for k, want := range map[string]string{
		"http.request.method": "POST", "http.route": "/user", "http.response.status_code": "201",
		"url.path": "/user", "url.scheme": "http",
	} {
		if attrs[k] != want {
			t.Errorf("server span %s = %q, want %q", k, attrs[k], want)
		}
	}

	var db []tracetest.SpanStub
	for _, s := range spans {
		if s.Parent.SpanID() == server.SpanContext.SpanID() && attrMap(s.Attributes)["db.system"] == "postgresql" {
			db = append(db, s)
		}
	}
	if len(db) == 0 {
		t.Fatalf("no database span under the server span; spans: %v", names(spans))
	}
	for _, s := range spans {
		stmt := attrMap(s.Attributes)["db.statement"]
		if strings.Contains(stmt, "secret") {
			t.Errorf("span %q shows a value: %s", s.Name, stmt)
		}
	}
	if stmt := attrMap(db[0].Attributes)["db.statement"]; !strings.Contains(stmt, "INSERT INTO users") {
		t.Errorf("database span %q statement %q, want the INSERT's shape", db[0].Name, stmt)
	}

	// Every line logged for the request carries the server span's ids.
	var lines int
	for _, l := range logLines(t, o.logs) {
		if l["msg"] == "started" || l["msg"] == "listening" {
			continue
		}
		lines++
		if l["trace_id"] != server.SpanContext.TraceID().String() || l["span_id"] != server.SpanContext.SpanID().String() {
			t.Errorf("log line %v does not carry the server span's trace_id and span_id", l)
		}
	}
	if lines == 0 {
		t.Error("the request logged nothing")
	}
}

// TestTraceCloudEvent: an event carrying a traceparent extension gets a
// delivery span whose parent is the sender's span, and the reply carries
// the delivery's context on: its traceparent names the delivery span.
func TestTraceCloudEvent(t *testing.T) {
	for _, mode := range []string{"binary", "structured"} {
		t.Run(mode, func(t *testing.T) {
			o := observe(t, true)
			const tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
			sent := "00-" + tid + "-" + sid + "-01"
			status, h, body := sendEvent(t, o.url, mode, "trace-1", sent)
			if status != http.StatusOK {
				t.Fatalf("event = %d %s", status, body)
			}
			var delivery *tracetest.SpanStub
			spans := o.spans.GetSpans()
			for i := range spans {
				if spans[i].SpanKind == trace.SpanKindConsumer {
					delivery = &spans[i]
				}
			}
			if delivery == nil {
				t.Fatalf("no delivery span among %v", names(spans))
			}
			if delivery.Name != "process com.example.user.create" {
				t.Errorf("delivery span named %q", delivery.Name)
			}
			if delivery.SpanContext.TraceID().String() != tid || delivery.Parent.SpanID().String() != sid {
				t.Errorf("delivery span %s/%s has parent %s, want a child of %s/%s", delivery.SpanContext.TraceID(),
					delivery.SpanContext.SpanID(), delivery.Parent.SpanID(), tid, sid)
			}
			if a := attrMap(delivery.Attributes); a["cloudevents.event_id"] != "trace-1" || a["users.outcome"] != "created" {
				t.Errorf("delivery span attributes %v", a)
			}
			var stored bool
			for _, s := range spans {
				if s.Parent.SpanID() == delivery.SpanContext.SpanID() && attrMap(s.Attributes)["db.system"] == "postgresql" {
					stored = true
				}
			}
			if !stored {
				t.Errorf("no database span under the delivery span: %v", names(spans))
			}
			want := "00-" + tid + "-" + delivery.SpanContext.SpanID().String() + "-01"
			if got := replyTraceparent(t, mode, h, body); got != want {
				t.Errorf("reply traceparent %q, want %q (the delivery's context)", got, want)
			}
		})
	}
}

// TestTracingOff: with no OTLP endpoint no span is made, no log line
// names a trace, and the reply still carries the sender's context on.
func TestTracingOff(t *testing.T) {
	o := observe(t, false)
	sent := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	status, h, body := sendEvent(t, o.url, "binary", "off-1", sent)
	if status != http.StatusOK {
		t.Fatalf("event = %d %s", status, body)
	}
	if got := h.Get("Ce-Traceparent"); got != sent {
		t.Errorf("reply traceparent %q, want the sender's %q", got, sent)
	}
	if status, _, _ := do(t, "GET", o.url+"/user", "", "traceparent", sent); status != http.StatusOK {
		t.Fatalf("GET /user = %d", status)
	}
	for _, l := range logLines(t, o.logs) {
		if _, ok := l["trace_id"]; ok {
			t.Errorf("tracing off, yet a log line names a trace: %v", l)
		}
	}
}

func sendEvent(t *testing.T, url, mode, id, traceparent string) (int, http.Header, []byte) {
	t.Helper()
	data := `{"username":"ev` + id + `","email":"ev` + id + `@example.com"}`
	if mode == "binary" {
		return do(t, "POST", url+"/", data, "Ce-Specversion", "1.0", "Ce-Id", id, "Ce-Source", "/test",
			"Ce-Type", "com.example.user.create", "Ce-Traceparent", traceparent)
	}
	ev := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test","type":"com.example.user.create",`+
		`"datacontenttype":"application/json","traceparent":%q,"data":%s}`, id, traceparent, data)
	return do(t, "POST", url+"/", ev, "Content-Type", "application/cloudevents+json")
}

func replyTraceparent(t *testing.T, mode string, h http.Header, body []byte) string {
	t.Helper()
	if mode == "binary" {
		return h.Get("Ce-Traceparent")
	}
	var ev struct {
		Traceparent string `json:"traceparent"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatalf("reply %s: %v", body, err)
	}
	return ev.Traceparent
}

// TestMetrics sends a known sequence of requests and events, then reads
// /metrics with the Prometheus text parser: the series hold those counts.
func TestMetrics(t *testing.T) {
	o := observe(t, false, "K_SERVICE", "users", "K_CONFIGURATION", "users", "K_REVISION", "users-00042",
		"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	steps := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/user", `{"username":"m1","email":"m1@example.com"}`, 201},
		{"POST", "/user", `{"username":"m2","email":"m2@example.com"}`, 201},
		{"POST", "/user", `{"username":"m3","email":"m3@example.com"}`, 201},
		{"POST", "/user", `{"username":"m1","email":"other@example.com"}`, 409},
		{"POST", "/user", `{"username":""}`, 400},
		{"GET", "/user", "", 200},
		{"GET", "/user", "", 200},
		{"GET", "/user/1", "", 200},
		{"GET", "/user/999999", "", 404},
		{"GET", "/nowhere", "", 404},
		{"DELETE", "/user", "", 405},
		{"GET", "/-/ready", "", 200},
	}
	for _, s := range steps {
		if status, _, body := do(t, s.method, o.url+s.path, s.body); status != s.status {
			t.Fatalf("%s %s = %d %s, want %d", s.method, s.path, status, body, s.status)
		}
	}
	for _, e := range []struct {
		id     string
		status int
	}{{"e1", 200}, {"e1", 200}, {"e2", 200}} {
		if status, _, body := sendEvent(t, o.url, "binary", e.id, ""); status != e.status {
			t.Fatalf("event %s = %d %s", e.id, status, body)
		}
	}
	if status, _, _ := do(t, "POST", o.url+"/", `{}`, "Ce-Specversion", "1.0", "Ce-Id", "x", "Ce-Source", "/t", "Ce-Type", "com.example.other"); status != 400 {
		t.Fatalf("event of another type = %d, want 400", status)
	}

	fams := scrape(t, o.url+app.MetricsPath)
	count := func(route, method, class string) uint64 {
		return histogramCount(fams["http_server_request_duration_seconds"], map[string]string{
			"http_route": route, "http_request_method": method, "http_response_status_class": class})
	}
	for _, c := range []struct {
		route, method, class string
		want                 uint64
	}{
		{"/user", "POST", "2xx", 3},
		{"/user", "POST", "4xx", 2},
		{"/user", "GET", "2xx", 2},
		{"/user/{id}", "GET", "2xx", 1},
		{"/user/{id}", "GET", "4xx", 1},
		{"", "GET", "4xx", 1}, // /nowhere: no route
		{"/user", "DELETE", "4xx", 1},
		{"/-/ready", "GET", "2xx", 1},
		{"/{$}", "POST", "2xx", 3},
		{"/{$}", "POST", "4xx", 1},
	} {
		if got := count(c.route, c.method, c.class); got != c.want {
			t.Errorf("requests %s %q %s = %d, want %d", c.method, c.route, c.class, got, c.want)
		}
	}
	for outcome, want := range map[string]float64{"created": 2, "duplicate": 1, "rejected": 1, "failed": 0} {
		if got := value(fams["users_cloudevents_deliveries_total"], map[string]string{"outcome": outcome}); got != want {
			t.Errorf("deliveries %s = %v, want %v", outcome, got, want)
		}
	}
	if got := value(fams["db_client_connection_max"], nil); got != 10 {
		t.Errorf("db_client_connection_max = %v, want the pool's 10", got)
	}
	idle := value(fams["db_client_connection_count"], map[string]string{"db_client_connection_state": "idle"})
	used := value(fams["db_client_connection_count"], map[string]string{"db_client_connection_state": "used"})
	if idle < 1 || used != 0 {
		t.Errorf("connections idle %v, used %v: want some idle and none used between requests", idle, used)
	}
	for _, name := range []string{"db_client_connection_waits_total", "db_client_connection_wait_duration_seconds_total", "go_goroutine_count", "go_memory_used_bytes", "target_info"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if got := value(fams["users_ready"], nil); got != 1 {
		t.Errorf("users_ready = %v, want 1", got)
	}
	o.fn.Drain()
	if got := value(scrape(t, o.url+app.MetricsPath)["users_ready"], nil); got != 0 {
		t.Errorf("users_ready after Drain = %v, want 0", got)
	}

	// The same counts reach any other reader (an OTLP push, say).
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var posts uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "http.server.request.duration" {
				for _, dp := range h.DataPoints {
					if r, _ := dp.Attributes.Value(attribute.Key("http.route")); r.AsString() == "/user" &&
						attrSet(dp.Attributes)["http.request.method"] == "POST" {
						posts += dp.Count
					}
				}
			}
		}
	}
	if posts != 5 {
		t.Errorf("manual reader: %d POST /user requests, want 5", posts)
	}
	res := attrSet(*rm.Resource.Set())
	for k, want := range map[string]string{
		"service.name": "users", "service.version": o.fn.Version,
		"faas.name": "users", "faas.version": "users-00042",
		"knative.configuration.name": "users", "knative.revision.name": "users-00042",
		"deployment.environment.name": "test",
	} {
		if res[k] != want {
			t.Errorf("resource %s = %q, want %q", k, res[k], want)
		}
	}
	if ti := fams["target_info"]; !matches(ti.GetMetric()[0], map[string]string{"knative_revision_name": "users-00042"}) {
		t.Errorf("target_info %v does not name the revision", ti)
	}
}

// TestMetricsCardinality: a thousand distinct paths, ids and methods add
// no series: no label takes a value from the request.
func TestMetricsCardinality(t *testing.T) {
	o := observe(t, false)
	round := func(i int) {
		do(t, "GET", fmt.Sprintf("%s/no/such/path/%d", o.url, i), "")
		do(t, "GET", fmt.Sprintf("%s/user/%d", o.url, 100000+i), "")
		do(t, "GET", fmt.Sprintf("%s/user/not-a-number-%d", o.url, i), "")
		do(t, fmt.Sprintf("BREW%d", i), o.url+"/user", "")
		do(t, "POST", o.url+"/user", fmt.Sprintf(`{"username":"card%d","email":"card%d@example.com"}`, i, i))
	}
	round(0)
	scrape(t, o.url+app.MetricsPath) // a scrape is a request too
	before := series(scrape(t, o.url+app.MetricsPath))
	for i := 1; i <= 1000; i++ {
		round(i)
	}
	after := series(scrape(t, o.url+app.MetricsPath))
	if len(after) != len(before) {
		var grown []string
		for k := range after {
			if !before[k] {
				grown = append(grown, k)
			}
		}
		t.Errorf("%d series after one round, %d after 1,000 more: a label grows with the requests: %q", len(before), len(after), grown)
	}
}

// TestMetricsAndDebugAddresses: METRICS_ADDR moves /metrics off the API's
// port; DEBUG_ADDR serves pprof on loopback only, never on the API's port.
func TestMetricsAndDebugAddresses(t *testing.T) {
	mport, dport := loopback.FreePort(t), loopback.FreePort(t)
	o := observe(t, false, "METRICS_ADDR", fmt.Sprintf("127.0.0.1:%d", mport), "DEBUG_ADDR", fmt.Sprintf(":%d", dport))
	if status, _, _ := do(t, "GET", o.url+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's port = %d, want 404 when METRICS_ADDR is set", status)
	}
	if fams := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)); fams["users_ready"] == nil {
		t.Errorf("no users_ready on METRICS_ADDR")
	}
	if status, _, body := do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/cmdline", dport), ""); status != 200 || len(body) == 0 {
		t.Errorf("pprof on DEBUG_ADDR = %d", status)
	}
	if status, _, _ := do(t, "GET", o.url+"/debug/pprof/", ""); status != http.StatusNotFound {
		t.Errorf("pprof on the API's port = %d, want 404", status)
	}
	// A bare port binds loopback: the machine's other addresses refuse.
	if ip := outboundIP(t); ip != "" {
		if c, err := net.Dial("tcp", net.JoinHostPort(ip, fmt.Sprint(dport))); err == nil {
			c.Close()
			t.Errorf("DEBUG_ADDR :%d answers on %s, not loopback only", dport, ip)
		}
	}
}

func outboundIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Log("no non-loopback address to check DEBUG_ADDR against")
	return ""
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	status, _, body := do(t, "GET", url, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d", url, status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	return fams
}

// series names every series: its family and its labels.
func series(fams map[string]*dto.MetricFamily) map[string]bool {
	s := map[string]bool{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(" %s=%q", l.GetName(), l.GetValue())
			}
			s[key] = true
		}
	}
	return s
}

// matches reports whether m has every label in want ("" meaning absent).
func matches(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func histogramCount(f *dto.MetricFamily, want map[string]string) uint64 {
	var n uint64
	for _, m := range f.GetMetric() {
		if matches(m, want) {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

func value(f *dto.MetricFamily, want map[string]string) float64 {
	var v float64
	for _, m := range f.GetMetric() {
		if matches(m, want) {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func attrSet(s attribute.Set) map[string]string { return attrMap(s.ToSlice()) }

func names(spans []tracetest.SpanStub) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

func logLines(t *testing.T, l *testenv.Logs) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}
