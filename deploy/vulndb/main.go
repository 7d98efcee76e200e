// Command vulndb builds a Go vulnerability database that govulncheck reads
// offline (`govulncheck -db file:///DIR`) from the OSV files of the module
// golang.org/x/vulndb, which the Go module proxy serves when vuln.go.dev
// cannot be reached:
//
//	go mod download -json golang.org/x/vulndb@VERSION   # its "Dir"
//	go run ./vulndb -osv DIR/data/osv -out OUT
//
// OUT gets the layout of https://go.dev/security/vuln/database#api (v1):
// index/db.json, index/modules.json and ID/<id>.json, uncompressed, which is
// what govulncheck's file:// source reads. The index leaves out each
// entry's "fixed" version: govulncheck then fetches every entry of a
// module it finds and decides from the entry's own ranges, which is what it
// would do anyway for a module older than the fix.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is the part of an OSV record the index needs. The OSV schema
// names a Go module "package" and its path "name". In the repository's
// files "modified" is zero (vuln.go.dev sets it when it publishes), so the
// publication time, where there is one, stands in for it.
type entry struct {
	ID        string    `json:"id"`
	Modified  time.Time `json:"modified"`
	Published time.Time `json:"published"`
	Affected  []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type (
	dbMeta struct {
		Modified time.Time `json:"modified"`
	}
	moduleMeta struct {
		Path  string       `json:"path"`
		Vulns []moduleVuln `json:"vulns"`
	}
	moduleVuln struct {
		ID       string    `json:"id"`
		Modified time.Time `json:"modified"`
	}
)

func main() {
	src := flag.String("osv", "", "directory of OSV files (golang.org/x/vulndb's data/osv)")
	out := flag.String("out", "", "directory to write the database to (created; must be empty or absent)")
	flag.Parse()
	if *src == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: vulndb -osv DIR -out DIR")
		os.Exit(2)
	}
	n, err := build(os.DirFS(*src), *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
	fmt.Printf("vulndb: %d entries written to %s\n", n, *out)
}

// build writes the database for the OSV files in src to out and returns
// the number of entries.
func build(src fs.FS, out string) (int, error) {
	files, err := fs.Glob(src, "*.json")
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, errors.New("no OSV files found")
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(out, "index"), 0o755); err != nil {
		return 0, err
	}
	var db dbMeta
	modules := map[string]*moduleMeta{}
	for _, name := range files {
		data, err := fs.ReadFile(src, name)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(data, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if e.Modified.IsZero() {
			e.Modified = e.Published
		}
		if e.ID == "" || e.ID+".json" != name {
			return 0, fmt.Errorf("%s: not an OSV entry named after its id", name)
		}
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		seen := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Package.Name
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			m := modules[p]
			if m == nil {
				m = &moduleMeta{Path: p}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		if err := os.WriteFile(filepath.Join(out, "ID", name), data, 0o644); err != nil {
			return 0, err
		}
	}
	index := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		index = append(index, m)
	}
	slices.SortFunc(index, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })
	if err := writeJSON(filepath.Join(out, "index", "modules.json"), index); err != nil {
		return 0, err
	}
	if err := writeJSON(filepath.Join(out, "index", "db.json"), db); err != nil {
		return 0, err
	}
	return len(files), nil
}

func writeJSON(path string, v any) error {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
