package function

import (
	"go/version"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/example/users/internal/testenv"
)

// TestToolchain: the tests, and so the builds, run on at least the Go
// release go.mod's toolchain line names, the first with no known
// vulnerability reachable from this code (docs/answers.md, govulncheck).
// These machines set GOTOOLCHAIN=local, which ignores that line: export
// GOTOOLCHAIN=auto (README, Tests) and the go command fetches it.
func TestToolchain(t *testing.T) {
	for _, mod := range []string{"go.mod", "deploy/go.mod"} {
		want := testenv.Toolchain(t, mod)
		if mod == "go.mod" {
			pinned(t, want)
			readme(t, want)
		}
		if version.Compare(runtime.Version(), want) < 0 {
			t.Errorf("built with %s, older than %s's toolchain %s: export GOTOOLCHAIN=auto", runtime.Version(), mod, want)
		}
	}
}

// pinned checks that the pipeline tests and builds the image with the
// release go.mod names: its GO_VERSION picks the golang image, whose
// GOTOOLCHAIN=local would refuse an older one and silently keep a newer.
func pinned(t *testing.T, toolchain string) {
	t.Helper()
	b, err := os.ReadFile(".gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "GO_VERSION:"); ok {
			if got := "go" + strings.Trim(strings.TrimSpace(v), `"`); got != toolchain {
				t.Errorf(".gitlab-ci.yml GO_VERSION %s, want go.mod's toolchain %s", got, toolchain)
			}
			return
		}
	}
	t.Error(".gitlab-ci.yml sets no GO_VERSION")
}

// readme checks that README's func commands name the toolchain: func
// builds in a module of its own making, which names none.
func readme(t *testing.T, toolchain string) {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "$ ") && (strings.Contains(line, "func build") || strings.Contains(line, "func run")) {
			if !strings.Contains(line, "GOTOOLCHAIN="+toolchain+" ") {
				t.Errorf("README.md: %q does not set GOTOOLCHAIN=%s", strings.TrimSpace(line), toolchain)
			}
		}
	}
}
