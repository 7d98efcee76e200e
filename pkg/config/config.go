// Package config reads the service's settings from environment variables.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
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
	Database Database
	HTTP     HTTP
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// MigrateTimeout bounds one `users migrate` run, lock wait included.
	MigrateTimeout time.Duration `env:"MIGRATE_TIMEOUT" envDefault:"5m"`
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

// Error lists every variable that is missing or invalid, so one run of the
// binary tells an operator everything that is wrong.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// Load reads the configuration from environ (name to value).
func Load(environ map[string]string) (Config, error) {
	var cfg Config
	var problems []string
	err := env.ParseWithOptions(&cfg, env.Options{Environment: environ})
	var agg env.AggregateError
	switch {
	case err == nil:
	case errors.As(err, &agg):
		for _, e := range agg.Errors {
			problems = append(problems, describe(e))
		}
	default:
		problems = append(problems, describe(err))
	}
	// A variable that did not parse is reported once, not again by the
	// range checks that see its zero value.
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p[:strings.IndexByte(p+":", ':')]] = true
	}
	for _, p := range cfg.validate() {
		if !failed[p[:strings.IndexByte(p+":", ':')]] {
			problems = append(problems, p)
		}
	}
	if cfg.Database.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Database.PasswordFile)
		if err != nil {
			problems = append(problems, fmt.Sprintf("POSTGRES_PASSWORD_FILE: cannot read %s: %v", cfg.Database.PasswordFile, errors.Unwrap(err)))
		} else {
			cfg.Database.Password = strings.TrimRight(string(b), "\r\n")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return Config{}, &Error{Problems: problems}
	}
	return cfg, nil
}

func (c Config) validate() []string {
	var p []string
	d := c.Database
	if d.Port < 1 || d.Port > 65535 {
		p = append(p, "POSTGRES_PORT: must be between 1 and 65535")
	}
	switch d.SSLMode {
	case SSLDisable, SSLRequire, SSLVerifyFull:
	default:
		p = append(p, fmt.Sprintf("POSTGRES_SSLMODE: must be one of disable, require, verify-full, not %q", d.SSLMode))
	}
	if d.MaxConns < 1 {
		p = append(p, "POSTGRES_MAX_CONNS: must be at least 1")
	}
	for name, v := range map[string]time.Duration{
		"POSTGRES_DIAL_TIMEOUT":  d.DialTimeout,
		"POSTGRES_QUERY_TIMEOUT": d.QueryTimeout,
		"SHUTDOWN_TIMEOUT":       c.HTTP.ShutdownTimeout,
		"REQUEST_TIMEOUT":        c.HTTP.RequestTimeout,
		"MIGRATE_TIMEOUT":        c.MigrateTimeout,
	} {
		if v <= 0 {
			p = append(p, name+": must be a positive duration such as 5s")
		}
	}
	if c.HTTP.DrainDelay < 0 {
		p = append(p, "SHUTDOWN_DRAIN_DELAY: must not be negative")
	}
	if c.HTTP.ListenPort < 1 || c.HTTP.ListenPort > 65535 {
		p = append(p, "PORT: must be between 1 and 65535")
	}
	if _, err := c.Level(); err != nil {
		p = append(p, err.Error())
	}
	return p
}

// Level is LogLevel as a slog level.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL: must be one of debug, info, warn, error, not %q", c.LogLevel)
	}
	return l, nil
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

// describe turns an env error into "VARIABLE: what is wrong". Parse errors
// carry the Go field name, which would mean nothing to an operator.
func describe(err error) string {
	var notSet env.EnvVarIsNotSetError
	var empty env.EmptyEnvVarError
	var parse env.ParseError
	switch {
	case errors.As(err, &notSet):
		return notSet.Key + ": required but not set"
	case errors.As(err, &empty):
		return empty.Key + ": must not be empty"
	case errors.As(err, &parse):
		name := parse.Name
		for _, v := range Variables() {
			if v.Field == parse.Name {
				name = v.Name
			}
		}
		return fmt.Sprintf("%s: not a valid %s", name, parse.Type)
	}
	return err.Error()
}

// Var describes one environment variable the service reads.
type Var struct {
	Name     string
	Field    string
	Required bool
	Default  string
}

// Variables lists every variable Config reads, from its struct tags, so
// deployment files can be checked against the code rather than a copy.
// Field names are unique across Config (a test checks), which lets parse
// errors, which carry only the field name, name their variable.
func Variables() []Var {
	var out []Var
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type)
				continue
			}
			tag := f.Tag.Get("env")
			if tag == "" {
				continue
			}
			parts := strings.Split(tag, ",")
			v := Var{Name: parts[0], Field: f.Name, Default: f.Tag.Get("envDefault")}
			for _, opt := range parts[1:] {
				if opt == "required" {
					v.Required = true
				}
			}
			out = append(out, v)
		}
	}
	walk(reflect.TypeOf(Config{}))
	return out
}
