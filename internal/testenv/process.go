package testenv

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Logs collects what a server writes from its own goroutine (or a child
// process's output) while the test reads it.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Bytes returns a copy of everything written so far.
func (l *Logs) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
