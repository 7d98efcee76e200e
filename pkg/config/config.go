// Package config reads the service's settings from environment variables.
// Only the composition root (pkg/app) and the command line (pkg/cli) read
// it: the packages below take options of their own, such as the
// store.Options that Database.Options builds.
package config

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/telemetry"
)

// SSL modes the service understands. "prefer" and "allow" are left out on
// purpose: they silently fall back to plain text.
const (
	SSLDisable    = "disable"
	SSLRequire    = "require"
	SSLVerifyFull = "verify-full"
)

// Config is everything the binary and the function need to run.
type Config struct {
	Database  Database
	HTTP      HTTP
	Telemetry Telemetry
	// LogLevel is one of debug, info, warn, error; env decodes it with
	// slog.Level's UnmarshalText.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	// MigrateTimeout bounds one `users migrate` run, lock wait included.
	MigrateTimeout time.Duration `env:"MIGRATE_TIMEOUT" envDefault:"5m"`
	// IdempotencyKeyTTL is how long an Idempotency-Key of POST /user is
	// kept: a retry within it gets the first answer, one after it is a
	// new request.
	IdempotencyKeyTTL time.Duration `env:"IDEMPOTENCY_KEY_TTL" envDefault:"24h"`
}

// Database holds the PostgreSQL connection settings. The variable names
// are the ones the original application used.
type Database struct {
	User     string `env:"POSTGRES_USERNAME,required"`
	Password string `env:"POSTGRES_PASSWORD"`
	// PasswordFile wins over Password: Kubernetes mounts Secrets as files
	// and a file never shows up in `env` or /proc/*/environ.
	PasswordFile string        `env:"POSTGRES_PASSWORD_FILE"`
	Host         string        `env:"POSTGRES_HOST,required"`
	Port         int           `env:"POSTGRES_PORT" envDefault:"5432"`
	Name         string        `env:"POSTGRES_DATABASE,required"`
	SSLMode      string        `env:"POSTGRES_SSLMODE" envDefault:"disable"`
	MaxConns     int           `env:"POSTGRES_MAX_CONNS" envDefault:"10"`
	DialTimeout  time.Duration `env:"POSTGRES_DIAL_TIMEOUT" envDefault:"2s"`
	// QueryTimeout is how long a request waits for the database before it
	// gets a 503: for a connection, for a statement's answer, and for each
	// further read of a streamed list. The driver restarts it with every
	// row, so a list that keeps coming is never cut, and it can be short
	// enough that a silent database (packets dropped, no reset) answers
	// 503 within 5 s.
	QueryTimeout time.Duration `env:"POSTGRES_QUERY_TIMEOUT" envDefault:"4s"`
	// PreparedStatements has each connection prepare the service's
	// statements once. Turn it off behind a pooler in transaction mode
	// that does not track them (PgBouncer before 1.21): there a statement
	// prepared on one server connection is unknown on the next.
	PreparedStatements bool `env:"POSTGRES_PREPARED_STATEMENTS" envDefault:"true"`
	// MigrateHost and MigratePort are where `users migrate` connects,
	// when that is not Host and Port: migrations hold a session-level
	// advisory lock, which a pooler in transaction mode (in front of the
	// service's connections) cannot keep. Empty and 0 mean Host and Port.
	MigrateHost string `env:"POSTGRES_MIGRATE_HOST"`
	MigratePort int    `env:"POSTGRES_MIGRATE_PORT"`
}

// Migration is d with the host and port that migrations connect to.
func (d Database) Migration() Database {
	if d.MigrateHost != "" {
		d.Host = d.MigrateHost
	}
	if d.MigratePort != 0 {
		d.Port = d.MigratePort
	}
	return d
}

// HTTP holds the server settings.
type HTTP struct {
	// Port is read, never set: Knative reserves PORT and fills it in.
	ListenPort int `env:"PORT" envDefault:"8080"`
	// DrainDelay keeps serving after SIGTERM while endpoints are updated.
	// Knative's queue-proxy drains for us, so the default is 0; behind a
	// plain Kubernetes Service a few seconds avoid refused connections.
	DrainDelay      time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// RequestTimeout bounds a request's database work.
	RequestTimeout time.Duration `env:"REQUEST_TIMEOUT" envDefault:"15s"`
}

// Telemetry holds the observability settings. The OTEL_* variables are
// OpenTelemetry's own and mean what its specification says; the OTLP
// exporters read the rest of theirs (headers, timeouts, certificates)
// from the process environment themselves.
type Telemetry struct {
	// MetricsAddr, when set, serves /metrics on this address instead of
	// the API's port, so a plain Deployment can keep it off the Service.
	// Knative allows one port, so there it stays empty.
	MetricsAddr string `env:"METRICS_ADDR"`
	// DebugAddr, when set, serves net/http/pprof there and nowhere else.
	// A bare port (":6060") binds loopback only.
	DebugAddr string `env:"DEBUG_ADDR"`

	SDKDisabled bool   `env:"OTEL_SDK_DISABLED"`
	ServiceName string `env:"OTEL_SERVICE_NAME" envDefault:"users"`
	// Endpoint and the per-signal ones switch OTLP export on; with none
	// set nothing is sent and tracing is off.
	Endpoint        string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	TracesEndpoint  string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	MetricsEndpoint string `env:"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"`
	// Protocol must be http/protobuf: the gRPC exporter would double the
	// binary for a transport every collector also serves over HTTP.
	Protocol        string `env:"OTEL_EXPORTER_OTLP_PROTOCOL" envDefault:"http/protobuf"`
	TracesProtocol  string `env:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
	MetricsProtocol string `env:"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"`
	// TracesExporter and MetricsExporter are otlp or none. /metrics is
	// served whatever MetricsExporter says: it is the pull side.
	TracesExporter  string `env:"OTEL_TRACES_EXPORTER" envDefault:"otlp"`
	MetricsExporter string `env:"OTEL_METRICS_EXPORTER" envDefault:"otlp"`
	Sampler         string `env:"OTEL_TRACES_SAMPLER" envDefault:"parentbased_always_on"`
	SamplerArg      string `env:"OTEL_TRACES_SAMPLER_ARG"`
	// ResourceAttributes are key=value pairs, comma-separated, added to
	// every span and metric.
	ResourceAttributes string `env:"OTEL_RESOURCE_ATTRIBUTES"`

	// Knative sets these in every revision's pods; they go into the
	// resource so a trace or series names the revision that served it.
	KnativeService       string `env:"K_SERVICE"`
	KnativeConfiguration string `env:"K_CONFIGURATION"`
	KnativeRevision      string `env:"K_REVISION"`
}

// Tracing reports whether spans are exported.
func (t Telemetry) Tracing() bool {
	return !t.SDKDisabled && t.TracesExporter == "otlp" && (t.Endpoint != "" || t.TracesEndpoint != "")
}

// MetricsPush reports whether metrics are pushed over OTLP as well.
func (t Telemetry) MetricsPush() bool {
	return !t.SDKDisabled && t.MetricsExporter == "otlp" && (t.Endpoint != "" || t.MetricsEndpoint != "")
}

func (t *Telemetry) check() []Problem {
	var p []Problem
	samplers := []string{"always_on", "always_off", "traceidratio",
		"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}
	for _, v := range []struct{ name, value string }{
		{"OTEL_EXPORTER_OTLP_PROTOCOL", t.Protocol},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", t.TracesProtocol},
		{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", t.MetricsProtocol},
	} {
		if v.value != "" && v.value != "http/protobuf" {
			p = append(p, Problem{v.name, fmt.Sprintf("must be http/protobuf (OTLP over HTTP, a collector's port 4318), not %q", v.value)})
		}
	}
	for _, v := range []struct{ name, value string }{
		{"OTEL_TRACES_EXPORTER", t.TracesExporter},
		{"OTEL_METRICS_EXPORTER", t.MetricsExporter},
	} {
		if v.value != "otlp" && v.value != "none" {
			p = append(p, Problem{v.name, fmt.Sprintf("must be otlp or none, not %q", v.value)})
		}
	}
	if !slices.Contains(samplers, t.Sampler) {
		p = append(p, Problem{"OTEL_TRACES_SAMPLER", fmt.Sprintf("must be one of %s, not %q", strings.Join(samplers, ", "), t.Sampler)})
	} else if _, err := t.SamplerRatio(); err != nil {
		p = append(p, Problem{"OTEL_TRACES_SAMPLER_ARG", err.Error()})
	}
	if _, err := t.Resource(); err != nil {
		p = append(p, Problem{"OTEL_RESOURCE_ATTRIBUTES", err.Error()})
	}
	for _, v := range []struct{ name, value string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", t.Endpoint},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t.TracesEndpoint},
		{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", t.MetricsEndpoint},
	} {
		if u, err := url.Parse(v.value); v.value != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			p = append(p, Problem{v.name, fmt.Sprintf("must be an http:// or https:// URL, such as http://otel-collector:4318, not %q", v.value)})
		}
	}
	for _, v := range []struct{ name, value string }{
		{"METRICS_ADDR", t.MetricsAddr}, {"DEBUG_ADDR", t.DebugAddr},
	} {
		if v.value == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(v.value); err != nil || port == "" {
			p = append(p, Problem{v.name, fmt.Sprintf("must be host:port or :port, not %q", v.value)})
		}
	}
	return p
}

// SamplerRatio is the ratio of the traceidratio samplers: 1 unless
// OTEL_TRACES_SAMPLER_ARG says otherwise.
func (t Telemetry) SamplerRatio() (float64, error) {
	if t.SamplerArg == "" || !strings.HasSuffix(t.Sampler, "traceidratio") {
		return 1, nil
	}
	r, err := strconv.ParseFloat(t.SamplerArg, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, fmt.Errorf("must be a number from 0 to 1 for %s, not %q", t.Sampler, t.SamplerArg)
	}
	return r, nil
}

// Resource parses ResourceAttributes as the specification says:
// key=value pairs separated by commas, values percent-encoded.
func (t Telemetry) Resource() (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(t.ResourceAttributes) == "" {
		return m, nil
	}
	for pair := range strings.SplitSeq(t.ResourceAttributes, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", pair)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded: %v", k, err)
		}
		m[k] = dv
	}
	return m, nil
}

// Options are the telemetry options for t, for a build of version.
func (t Telemetry) Options(version string) (telemetry.Options, error) {
	attrs, err := t.Resource()
	if err != nil {
		return telemetry.Options{}, err
	}
	for k, v := range map[string]string{
		"faas.name": t.KnativeService, "faas.version": t.KnativeRevision,
		"knative.configuration.name": t.KnativeConfiguration, "knative.revision.name": t.KnativeRevision,
	} {
		if v != "" {
			attrs[k] = v
		}
	}
	ratio, err := t.SamplerRatio()
	if err != nil {
		return telemetry.Options{}, err
	}
	var s sdktrace.Sampler
	switch t.Sampler {
	case "always_on":
		s = sdktrace.AlwaysSample()
	case "always_off":
		s = sdktrace.NeverSample()
	case "traceidratio":
		s = sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_off":
		s = sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		s = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	default:
		s = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	o := telemetry.Options{ServiceName: t.ServiceName, Version: version, Attributes: attrs, Sampler: s}
	// The endpoints are passed on rather than left to the exporters, which
	// would read the process's environment instead of this configuration.
	if t.Tracing() {
		o.TracesURL = signalURL(t.TracesEndpoint, t.Endpoint, "v1/traces")
	}
	if t.MetricsPush() {
		o.MetricsURL = signalURL(t.MetricsEndpoint, t.Endpoint, "v1/metrics")
	}
	return o, nil
}

// signalURL is the specification's rule: a signal's own endpoint is used
// as it is; the common one gets the signal's path appended.
func signalURL(own, base, path string) string {
	if own != "" {
		return own
	}
	return strings.TrimSuffix(base, "/") + "/" + path
}

// Problem is what is wrong with one variable.
type Problem struct {
	Var     string // the variable, such as POSTGRES_PORT
	Message string // what is wrong, with the value only where it is no secret
}

func (p Problem) String() string {
	if p.Var == "" {
		return p.Message
	}
	return p.Var + ": " + p.Message
}

// Error lists every variable that is missing or invalid, so one run of the
// binary tells an operator everything that is wrong.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// Load reads the configuration from environ (name to value).
func Load(environ map[string]string) (Config, error) {
	var cfg Config
	if err := load(environ, &cfg, cfg.check); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadHTTP reads the server settings alone, for a command that needs no
// database (healthcheck).
func LoadHTTP(environ map[string]string) (HTTP, error) {
	var h HTTP
	if err := load(environ, &h, h.check); err != nil {
		return HTTP{}, err
	}
	return h, nil
}

// load decodes environ into v, a pointer to Config or one of its parts,
// then runs check, and reports every problem of both at once. A variable
// that did not decode is reported once, not again by the range checks
// that see its zero value.
func load(environ map[string]string, v any, check func() []Problem) error {
	var problems []Problem
	err := env.ParseWithOptions(v, env.Options{Environment: environ})
	var agg env.AggregateError
	switch {
	case err == nil:
	case errors.As(err, &agg):
		for _, e := range agg.Errors {
			problems = append(problems, describe(v, e))
		}
	default:
		problems = append(problems, describe(v, err))
	}
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p.Var] = true
	}
	for _, p := range check() {
		if !failed[p.Var] {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		slices.SortFunc(problems, func(a, b Problem) int {
			return cmp.Or(strings.Compare(a.Var, b.Var), strings.Compare(a.Message, b.Message))
		})
		return &Error{Problems: problems}
	}
	return nil
}

// check reports the values that decoded but are out of range, and reads
// the password file.
func (c *Config) check() []Problem {
	p := append(c.Database.check(), c.HTTP.check()...)
	p = append(p, c.Telemetry.check()...)
	return append(p, broken([]rule{
		{c.MigrateTimeout <= 0, "MIGRATE_TIMEOUT", positive},
		{c.IdempotencyKeyTTL < time.Minute, "IDEMPOTENCY_KEY_TTL", "must be a duration of at least 1m, such as 24h"},
	})...)
}

func (d *Database) check() []Problem {
	p := broken([]rule{
		{d.Port < 1 || d.Port > 65535, "POSTGRES_PORT", "must be between 1 and 65535"},
		{d.MigratePort < 0 || d.MigratePort > 65535, "POSTGRES_MIGRATE_PORT", "must be between 1 and 65535 (or unset: POSTGRES_PORT)"},
		{!slices.Contains([]string{SSLDisable, SSLRequire, SSLVerifyFull}, d.SSLMode), "POSTGRES_SSLMODE",
			fmt.Sprintf("must be one of disable, require, verify-full, not %q", d.SSLMode)},
		{d.MaxConns < 1, "POSTGRES_MAX_CONNS", "must be at least 1"},
		{d.DialTimeout <= 0, "POSTGRES_DIAL_TIMEOUT", positive},
		{d.QueryTimeout <= 0, "POSTGRES_QUERY_TIMEOUT", positive},
	})
	if d.PasswordFile != "" {
		b, err := os.ReadFile(d.PasswordFile)
		if err != nil {
			p = append(p, Problem{"POSTGRES_PASSWORD_FILE", fmt.Sprintf("cannot read %s: %v", d.PasswordFile, errors.Unwrap(err))})
		} else {
			d.Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	return p
}

func (h *HTTP) check() []Problem {
	return broken([]rule{
		{h.ListenPort < 1 || h.ListenPort > 65535, "PORT", "must be between 1 and 65535"},
		{h.DrainDelay < 0, "SHUTDOWN_DRAIN_DELAY", "must not be negative"},
		{h.ShutdownTimeout <= 0, "SHUTDOWN_TIMEOUT", positive},
		{h.RequestTimeout <= 0, "REQUEST_TIMEOUT", positive},
	})
}

const positive = "must be a positive duration such as 5s"

// rule is one range check: the variable's problem when broken.
type rule struct {
	broken        bool
	name, message string
}

func broken(rules []rule) []Problem {
	var p []Problem
	for _, r := range rules {
		if r.broken {
			p = append(p, Problem{r.name, r.message})
		}
	}
	return p
}

// Options are the store's options for d.
func (d Database) Options() store.Options {
	o := store.Options{
		Host:         d.Host,
		Port:         d.Port,
		User:         d.User,
		Password:     d.Password,
		Database:     d.Name,
		MaxConns:     d.MaxConns,
		DialTimeout:  d.DialTimeout,
		QueryTimeout: d.QueryTimeout,
		Prepare:      d.PreparedStatements,
	}
	switch d.SSLMode {
	case SSLRequire:
		// Encrypted but unverified, as libpq's sslmode=require.
		o.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // that is what require means
	case SSLVerifyFull:
		o.TLS = &tls.Config{ServerName: d.Host, MinVersion: tls.VersionTLS12}
	}
	return o
}

// LogValue keeps the password out of logs whatever logs the config.
func (d Database) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", d.Host),
		slog.Int("port", d.Port),
		slog.String("database", d.Name),
		slog.String("user", d.User),
		slog.String("sslmode", d.SSLMode),
	)
}

// String keeps the password out of fmt output.
func (d Database) String() string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=%s", d.User, d.Host, d.Port, d.Name, d.SSLMode)
}

// GoString keeps the password out of %#v output.
func (d Database) GoString() string { return d.String() }

// describe turns an env error into a Problem.
func describe(v any, err error) Problem {
	var notSet env.EnvVarIsNotSetError
	var empty env.EmptyEnvVarError
	var parse env.ParseError
	switch {
	case errors.As(err, &notSet):
		return Problem{notSet.Key, "required but not set"}
	case errors.As(err, &empty):
		return Problem{empty.Key, "must not be empty"}
	case errors.As(err, &parse):
		msg := "not a valid " + parse.Type.String()
		if parse.Type == reflect.TypeFor[slog.Level]() {
			msg = "must be one of debug, info, warn, error"
		}
		return Problem{variable(reflect.TypeOf(v).Elem(), parse.Name), msg}
	}
	return Problem{Message: err.Error()}
}

// variable returns the variable that the field called name reads, in
// struct type t or a struct within it. env's parse errors carry only the
// Go field's name, which would mean nothing to an operator, and its
// FieldParams do not carry the field's name at all. Field names are unique
// across Config (TestParseErrorsNameTheirVariable fails otherwise).
func variable(t reflect.Type, name string) string {
	for f := range t.Fields() {
		if f.Name == name {
			key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			return key
		}
		if f.Type.Kind() == reflect.Struct {
			if key := variable(f.Type, name); key != "" {
				return key
			}
		}
	}
	return ""
}

// Var describes one environment variable the service reads.
type Var struct {
	Name     string
	Required bool
	Default  string
}

// Variables lists every variable Config reads, from its struct tags, so
// deployment files can be checked against the code rather than a copy.
// It panics if a tag is malformed, which Load would reject as well and
// this package's tests rule out.
func Variables() []Var {
	params, err := env.GetFieldParams(&Config{})
	if err != nil {
		panic("config: " + err.Error())
	}
	out := make([]Var, len(params))
	for i, p := range params {
		out[i] = Var{Name: p.Key, Required: p.Required, Default: p.DefaultValue}
	}
	return out
}
