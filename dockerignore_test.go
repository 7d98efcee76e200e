package function

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerignoreAllowsEveryPackage: .dockerignore is an allow-list, so
// a new top-level directory the binary or the function imports must be
// added to it, or `docker build` fails with "no required module provides
// package" (which happened with api/). Every directory of this module
// that those two import must be allowed.
func TestDockerignoreAllowsEveryPackage(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if dir, ok := strings.CutPrefix(strings.TrimSpace(line), "!"); ok && strings.HasSuffix(dir, "/") {
			allowed[strings.TrimSuffix(dir, "/")] = true
		}
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./pkg/cmd/users", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dir := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue // another module's, or the root's own *.go files
		}
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if !allowed[top] {
			t.Errorf(".dockerignore does not allow %s/, which %s is in: docker build would not see it", top, rel)
		}
	}
}
