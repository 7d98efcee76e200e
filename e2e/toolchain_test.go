//go:build e2e || func

package e2e

import (
	"os"
	"strings"
	"testing"
)

// toolchain is the Go release a go.mod's toolchain line names: what the
// binaries the tests build must be built with at least.
func toolchain(t *testing.T, gomod string) string {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			return v
		}
	}
	t.Fatalf("%s has no toolchain line", gomod)
	return ""
}
