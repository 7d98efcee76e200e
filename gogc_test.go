package function

import (
	"os"
	"regexp"
	"testing"
)

// TestGOGC: the image and func.yaml run the collector at the same GOGC,
// the one docs/performance.md measured and scripts/vs-lean.py reads from
// the Dockerfile, so every way of deploying the service runs it as it was
// measured. (The chart and compose.yaml run the image.)
func TestGOGC(t *testing.T) {
	for _, c := range []struct{ file, re string }{
		{"Dockerfile", `(?m)^ENV GOGC=(\d+)$`},
		{"func.yaml", `(?m)^\s*- name: GOGC\n\s*value: "(\d+)"$`},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(c.re).FindAllSubmatch(b, -1)
		if len(m) != 1 {
			t.Errorf("%s: want one GOGC setting (%s), found %d", c.file, c.re, len(m))
			continue
		}
		if got := string(m[0][1]); got != "400" {
			t.Errorf("%s: GOGC=%s, want 400, the value docs/performance.md measured", c.file, got)
		}
	}
}
