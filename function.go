// Package function is the root of the users service as Knative func sees
// it: `func build` scaffolds a main that imports this package and serves
// New() with knative.dev/func-go. The `users` binary (pkg/cmd/users)
// serves the same composition.
package function

import (
	"os"

	"github.com/example/users/pkg/app"
)

// New returns the composed function. Its Start reads the configuration
// from the environment func's runtime passes in.
func New() *app.Function {
	return app.New(os.Stderr)
}
