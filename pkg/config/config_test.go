package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func valid() map[string]string {
	return map[string]string{
		"POSTGRES_USERNAME": "app",
		"POSTGRES_PASSWORD": "s3cret-pw",
		"POSTGRES_HOST":     "db",
		"POSTGRES_DATABASE": "users",
	}
}

func with(kv ...string) map[string]string {
	m := valid()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(m, kv[i])
			continue
		}
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(valid())
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Database
	if d.Port != 5432 || d.SSLMode != SSLDisable || d.Password != "s3cret-pw" || d.MaxConns != 10 {
		t.Errorf("database = %+v", d)
	}
	if cfg.HTTP.ListenPort != 8080 || cfg.HTTP.DrainDelay != 0 || cfg.LogLevel != slog.LevelInfo {
		t.Errorf("http = %+v, log level %v", cfg.HTTP, cfg.LogLevel)
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // every variable the message must name
	}{
		{"nothing set", map[string]string{}, []string{"POSTGRES_USERNAME", "POSTGRES_HOST", "POSTGRES_DATABASE"}},
		{"bad port", with("POSTGRES_PORT", "fivefour"), []string{"POSTGRES_PORT"}},
		{"port range", with("POSTGRES_PORT", "70000"), []string{"POSTGRES_PORT"}},
		{"sslmode", with("POSTGRES_SSLMODE", "prefer"), []string{"POSTGRES_SSLMODE"}},
		{"http port", with("PORT", "0"), []string{"PORT"}},
		{"log level", with("LOG_LEVEL", "loud"), []string{"LOG_LEVEL"}},
		{"drain", with("SHUTDOWN_DRAIN_DELAY", "soon"), []string{"SHUTDOWN_DRAIN_DELAY"}},
		{"timeout", with("POSTGRES_QUERY_TIMEOUT", "0s"), []string{"POSTGRES_QUERY_TIMEOUT"}},
		{"pool", with("POSTGRES_MAX_CONNS", "0"), []string{"POSTGRES_MAX_CONNS"}},
		{"idempotency key ttl", with("IDEMPOTENCY_KEY_TTL", "30s"), []string{"IDEMPOTENCY_KEY_TTL"}},
		{"migrate port", with("POSTGRES_MIGRATE_PORT", "65536"), []string{"POSTGRES_MIGRATE_PORT"}},
		{"migrate port text", with("POSTGRES_MIGRATE_PORT", "direct"), []string{"POSTGRES_MIGRATE_PORT"}},
		{"password file missing", with("POSTGRES_PASSWORD_FILE", "/nonexistent/pw"), []string{"POSTGRES_PASSWORD_FILE"}},
		{"otlp over grpc", with("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), []string{"OTEL_EXPORTER_OTLP_PROTOCOL"}},
		{"otlp traces over grpc", with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"), []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}},
		{"trace exporter", with("OTEL_TRACES_EXPORTER", "jaeger"), []string{"OTEL_TRACES_EXPORTER"}},
		{"metrics exporter", with("OTEL_METRICS_EXPORTER", "prometheus"), []string{"OTEL_METRICS_EXPORTER"}},
		{"sampler", with("OTEL_TRACES_SAMPLER", "sometimes"), []string{"OTEL_TRACES_SAMPLER"}},
		{"sampler ratio", with("OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"), []string{"OTEL_TRACES_SAMPLER_ARG"}},
		{"resource attributes", with("OTEL_RESOURCE_ATTRIBUTES", "team=a,oops"), []string{"OTEL_RESOURCE_ATTRIBUTES"}},
		{"resource encoding", with("OTEL_RESOURCE_ATTRIBUTES", "team=%zz"), []string{"OTEL_RESOURCE_ATTRIBUTES"}},
		{"metrics address", with("METRICS_ADDR", "9090"), []string{"METRICS_ADDR"}},
		{"otlp endpoint", with("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318"), []string{"OTEL_EXPORTER_OTLP_ENDPOINT"}},
		{"otlp traces endpoint", with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://otel:4317"), []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}},
		{"debug address", with("DEBUG_ADDR", "localhost:"), []string{"DEBUG_ADDR"}},
		{"several at once", with("POSTGRES_HOST", "<unset>", "POSTGRES_PORT", "x", "POSTGRES_SSLMODE", "on", "LOG_LEVEL", "x"),
			[]string{"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_SSLMODE", "LOG_LEVEL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.env)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			for _, name := range tt.want {
				if !strings.Contains(err.Error(), name+":") {
					t.Errorf("message %q does not name %s", err, name)
				}
			}
			if len(cerr.Problems) != len(tt.want) {
				t.Errorf("problems = %q, want one each for %v", cerr.Problems, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("message leaks the password: %q", err)
			}
		})
	}
}

// TestMigration: migrations connect to POSTGRES_MIGRATE_HOST and _PORT
// where they are set, each on its own, and to the service's address where
// not; TLS then checks the host migrations connect to.
func TestMigration(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		host string
		port int
	}{
		{"unset: the service's", valid(), "db", 5432},
		{"both", with("POSTGRES_HOST", "pgbouncer", "POSTGRES_PORT", "6432", "POSTGRES_MIGRATE_HOST", "db.internal", "POSTGRES_MIGRATE_PORT", "5432"), "db.internal", 5432},
		{"host only", with("POSTGRES_HOST", "pgbouncer", "POSTGRES_MIGRATE_HOST", "db.internal"), "db.internal", 5432},
		{"port only", with("POSTGRES_PORT", "6432", "POSTGRES_MIGRATE_PORT", "5433"), "db", 5433},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["POSTGRES_SSLMODE"] = SSLVerifyFull
			cfg, err := Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			m := cfg.Database.Migration()
			if m.Host != tt.host || m.Port != tt.port {
				t.Errorf("migrations connect to %s:%d, want %s:%d", m.Host, m.Port, tt.host, tt.port)
			}
			if o := m.Options(); o.Host != tt.host || o.TLS.ServerName != tt.host {
				t.Errorf("store options: host %s, TLS server name %s, want %s", o.Host, o.TLS.ServerName, tt.host)
			}
		})
	}
}

func TestTelemetry(t *testing.T) {
	tests := []struct {
		name                  string
		env                   map[string]string
		tracesURL, metricsURL string
	}{
		{"default: nothing sent", valid(), "", ""},
		{"endpoint", with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"), "http://otel:4318/v1/traces", "http://otel:4318/v1/metrics"},
		{"endpoint with a path", with("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gw.example.org/otlp/"), "https://gw.example.org/otlp/v1/traces", "https://gw.example.org/otlp/v1/metrics"},
		{"traces endpoint", with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://otel:4318/custom"), "http://otel:4318/custom", ""},
		{"metrics endpoint", with("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://otel:4318/v1/metrics"), "", "http://otel:4318/v1/metrics"},
		{"traces off", with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318", "OTEL_TRACES_EXPORTER", "none"), "", "http://otel:4318/v1/metrics"},
		{"sdk disabled", with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318", "OTEL_SDK_DISABLED", "true"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			o, err := cfg.Telemetry.Options("v1")
			if err != nil {
				t.Fatal(err)
			}
			if o.TracesURL != tt.tracesURL || o.MetricsURL != tt.metricsURL {
				t.Errorf("traces to %q, metrics to %q; want %q and %q", o.TracesURL, o.MetricsURL, tt.tracesURL, tt.metricsURL)
			}
		})
	}
	cfg, err := Load(with("OTEL_RESOURCE_ATTRIBUTES", "team=payments, deployment.environment.name=prod%2Ceu", "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ := cfg.Telemetry.Resource()
	if len(res) != 2 || res["team"] != "payments" || res["deployment.environment.name"] != "prod,eu" {
		t.Errorf("Resource() = %v", res)
	}
	if r, _ := cfg.Telemetry.SamplerRatio(); r != 0.25 {
		t.Errorf("SamplerRatio() = %v, want 0.25", r)
	}
}

func TestPasswordFileWins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(with("POSTGRES_PASSWORD_FILE", path))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.Password != "from-file" {
		t.Errorf("password = %q, want the file's content without the newline", cfg.Database.Password)
	}
	cfg, err = Load(with("POSTGRES_PASSWORD_FILE", path, "POSTGRES_PASSWORD", "<unset>"))
	if err != nil || cfg.Database.Password != "from-file" {
		t.Errorf("file alone: %q, %v", cfg.Database.Password, err)
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	cfg, err := Load(valid())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprint(cfg.Database), fmt.Sprintf("%v", cfg.Database), fmt.Sprintf("%+v", cfg.Database),
		fmt.Sprintf("%#v", cfg.Database), cfg.Database.LogValue().String(),
	} {
		if strings.Contains(s, "s3cret-pw") {
			t.Errorf("password printed: %s", s)
		}
	}
}

func TestDurations(t *testing.T) {
	cfg, err := Load(with("SHUTDOWN_DRAIN_DELAY", "5s", "POSTGRES_DIAL_TIMEOUT", "1500ms"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.DrainDelay != 5*time.Second || cfg.Database.DialTimeout != 1500*time.Millisecond {
		t.Errorf("got %v, %v", cfg.HTTP.DrainDelay, cfg.Database.DialTimeout)
	}
}

func TestVariables(t *testing.T) {
	got := map[string]Var{}
	for _, v := range Variables() {
		got[v.Name] = v
	}
	for _, name := range []string{"POSTGRES_USERNAME", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DATABASE"} {
		if _, ok := got[name]; !ok {
			t.Errorf("Variables() lacks the seed's %s", name)
		}
	}
	// Every variable Variables() reports must really be read by Load.
	for name, v := range got {
		if v.Required {
			env := valid()
			delete(env, name)
			if _, err := Load(env); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s is reported required but Load accepts it missing", name)
			}
		}
	}
}

// TestParseErrorsNameTheirVariable sets each variable in turn to a value
// no type accepts: whatever rejects it must name that variable, and that
// one alone. Parse errors carry only the Go field's name, so two fields of
// one name would have the second reported as the first.
func TestParseErrorsNameTheirVariable(t *testing.T) {
	for _, v := range Variables() {
		t.Run(v.Name, func(t *testing.T) {
			_, err := Load(with(v.Name, "%not-valid%"))
			if err == nil {
				return // a free-form string
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0].Var != v.Name {
				t.Fatalf("%s=%%not-valid%%: %v, want one problem naming %s", v.Name, err, v.Name)
			}
		})
	}
}

// TestREADMEConfiguration: the README's Configuration table has a row for
// every variable the service reads and none for a variable it does not.
// Knative's K_* variables are set by the platform, never by an operator,
// and are described in prose instead.
func TestREADMEConfiguration(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
		}
	}
	for _, v := range Variables() {
		if strings.HasPrefix(v.Name, "K_") {
			continue
		}
		if !documented[v.Name] {
			t.Errorf("README.md's Configuration table has no row for %s", v.Name)
		}
		delete(documented, v.Name)
	}
	for n := range documented {
		t.Errorf("README.md's Configuration table documents %s, which the service does not read", n)
	}
}
