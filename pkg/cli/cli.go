// Package cli is the `users` command line: serve, migrate, healthcheck.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/example/users/migrations"
	"github.com/example/users/pkg/app"
	"github.com/example/users/pkg/config"
	"github.com/example/users/pkg/server"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// SignalContext is cancelled by the first SIGTERM or SIGINT; a second one
// exits at once, for an operator who does not want to wait for the drain.
func SignalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		cancel()
		<-sigs
		os.Exit(exitFail)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// Commands names every subcommand, for tests that check deployment files.
func Commands() []string { return []string{"serve", "migrate", "healthcheck", "version"} }

// Run runs the command line args (without the program name) and returns
// the exit code: 0 success, 1 failure, 2 bad usage or configuration.
// version is the build's version stamp.
func Run(ctx context.Context, version string, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return usage(stderr, "serve takes no arguments")
		}
		return serve(ctx, version, environ, stderr)
	case "migrate":
		return migrate(ctx, version, args, environ, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, environ, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, help)
		return exitOK
	}
	return usage(stderr, fmt.Sprintf("unknown command %q", cmd))
}

const help = `usage:
  users [serve]                    serve the HTTP API on :$PORT (default 8080)
  users migrate [up|down|status]   apply (default), revert the last group of, or list migrations
  users healthcheck [URL]          GET URL (default http://127.0.0.1:$PORT/-/ready); exit 0 on 2xx
  users version                    print the version
Configuration is read from environment variables; see README.md.
`

func usage(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "users: %s\n%s", msg, help)
	return exitConfig
}

func loadConfig(environ map[string]string, stderr io.Writer) (config.Config, bool) {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "users: %v\n", err)
		return cfg, false
	}
	return cfg, true
}

func serve(ctx context.Context, version string, environ map[string]string, stderr io.Writer) int {
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitConfig
	}
	fn := app.New(stderr)
	fn.Version = version
	logger := fn.Logger().With(slog.String("version", version))
	if err := fn.StartConfig(ctx, cfg); err != nil {
		logger.Error("start failed", slog.String("error", err.Error()))
		return exitFail
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.HTTP.ListenPort))
	if err != nil {
		logger.Error("listen failed", slog.String("error", err.Error()))
		_ = fn.Stop(context.Background())
		return exitFail
	}
	sd := server.Shutdown{DrainDelay: cfg.HTTP.DrainDelay, Timeout: cfg.HTTP.ShutdownTimeout}
	err = server.Serve(ctx, ln, server.New(fn, logger), sd, logger, fn.Drain)
	if serr := fn.Stop(context.Background()); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		logger.Error("server failed", slog.String("error", err.Error()))
		return exitFail
	}
	return exitOK
}

func migrate(ctx context.Context, version string, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	action := "up"
	if len(args) > 0 {
		action = args[0]
	}
	if len(args) > 1 || action != "up" && action != "down" && action != "status" {
		return usage(stderr, "migrate takes one of up, down, status")
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitConfig
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil)).With(slog.String("version", version))
	ctx, cancel := context.WithTimeout(ctx, cfg.MigrateTimeout)
	defer cancel()
	db, err := migrations.Open(ctx, cfg.Database.Migration().Options(), cfg.MigrateTimeout)
	if err != nil {
		logger.Error("migrate failed", slog.String("error", err.Error()))
		return exitFail
	}
	defer db.Close()
	runner, err := migrations.New(db)
	if err != nil {
		logger.Error("migrations are broken", slog.String("error", err.Error()))
		return exitFail
	}
	switch action {
	case "up":
		applied, err := runner.Up(ctx)
		for _, name := range applied {
			logger.Info("migration applied", slog.String("name", name))
		}
		if err != nil {
			logger.Error("migrate up failed", slog.String("error", err.Error()))
			return exitFail
		}
		logger.Info("schema is current", slog.Int("applied", len(applied)), slog.Int("known", len(runner.Names())))
	case "down":
		reverted, err := runner.Down(ctx)
		for _, name := range reverted {
			logger.Info("migration reverted", slog.String("name", name))
		}
		if err != nil {
			logger.Error("migrate down failed", slog.String("error", err.Error()))
			return exitFail
		}
	case "status":
		st, err := runner.Status(ctx)
		if err != nil {
			logger.Error("migrate status failed", slog.String("error", err.Error()))
			return exitFail
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", s.Name, state, s.Comment)
		}
	}
	return exitOK
}

func healthcheck(ctx context.Context, args []string, environ map[string]string, stderr io.Writer) int {
	if len(args) > 1 {
		return usage(stderr, "healthcheck takes at most one URL")
	}
	var url string
	if len(args) == 1 {
		url = args[0]
	} else {
		h, err := config.LoadHTTP(environ)
		if err != nil {
			// 1, not 2: a container runtime reads any other code as unhealthy
			// too, and Docker reserves 2.
			fmt.Fprintf(stderr, "healthcheck: %v\n", err)
			return exitFail
		}
		url = "http://127.0.0.1:" + strconv.Itoa(h.ListenPort) + "/-/ready"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return exitFail
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return exitFail
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", url, resp.Status)
		return exitFail
	}
	return exitOK
}
