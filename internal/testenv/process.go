package testenv

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/example/users/internal/syncbuf"
)

// Logs collects what a server writes from its own goroutine (or a child
// process's output) while the test reads it.
type Logs = syncbuf.Buffer

// Binary builds the users command, as CI and the image do, into a
// temporary directory and returns its path.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "users")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/example/users/pkg/cmd/users")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
