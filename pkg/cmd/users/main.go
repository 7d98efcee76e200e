// Command users serves the users API, applies its database migrations and
// checks a running instance's health. See pkg/cli for the commands.
package main

import (
	"os"

	"github.com/caarlos0/env/v10"

	"github.com/example/users/pkg/cli"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := cli.SignalContext()
	code := cli.Run(ctx, version, os.Args[1:], env.ToMap(os.Environ()), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
