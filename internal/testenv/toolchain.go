package testenv

import (
	"os"
	"strings"
	"testing"
)

// Toolchain is the Go release the go.mod file at gomod names on its
// toolchain line: what the binaries the tests build must be built with at
// least. A go.mod without one fails the test.
func Toolchain(tb testing.TB, gomod string) string {
	tb.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			return v
		}
	}
	tb.Fatalf("%s has no toolchain line", gomod)
	return ""
}
