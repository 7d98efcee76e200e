package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// osv is an entry as golang.org/x/vulndb's data/osv holds it: modified is
// zero there, published is set.
func osv(id, published string, modules ...string) *fstest.MapFile {
	var aff []string
	for _, m := range modules {
		aff = append(aff, `{"package":{"name":"`+m+`","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.3"}]}]}`)
	}
	return &fstest.MapFile{Data: []byte(`{"schema_version":"1.3.1","id":"` + id + `","modified":"0001-01-01T00:00:00Z","published":"` + published +
		`","affected":[` + strings.Join(aff, ",") + `]}`)}
}

func TestBuild(t *testing.T) {
	src := fstest.MapFS{
		"GO-2026-0002.json": osv("GO-2026-0002", "2026-11-05T10:00:00Z", "stdlib", "example.com/b"),
		"GO-2026-0001.json": osv("GO-2026-0001", "2026-10-01T00:00:00Z", "example.com/b", "example.com/b", "example.com/a"),
		"README.md":         {Data: []byte("not an entry")},
	}
	out := t.TempDir()
	n, err := build(src, out)
	if err != nil || n != 2 {
		t.Fatalf("build: %d, %v", n, err)
	}
	var db dbMeta
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if got := db.Modified.Format("2006-01-02T15:04:05Z07:00"); got != "2026-11-05T10:00:00Z" {
		t.Errorf("db.json modified %s, want the newest entry's publication", got)
	}
	var mods []moduleMeta
	readJSON(t, filepath.Join(out, "index", "modules.json"), &mods)
	var got []string
	for _, m := range mods {
		var ids []string
		for _, v := range m.Vulns {
			ids = append(ids, v.ID)
		}
		got = append(got, m.Path+"="+strings.Join(ids, ","))
	}
	want := "example.com/a=GO-2026-0001 example.com/b=GO-2026-0001,GO-2026-0002 stdlib=GO-2026-0002"
	if strings.Join(got, " ") != want {
		t.Errorf("modules.json: %s\nwant %s (sorted, each entry once per module)", strings.Join(got, " "), want)
	}
	b, err := os.ReadFile(filepath.Join(out, "ID", "GO-2026-0002.json"))
	if err != nil || string(b) != string(src["GO-2026-0002.json"].Data) {
		t.Errorf("ID/GO-2026-0002.json: %q, %v; want the OSV file as is", b, err)
	}
}

func TestBuildRefuses(t *testing.T) {
	for name, src := range map[string]fstest.MapFS{
		"no entries":     {"README.md": {Data: []byte("x")}},
		"name is not id": {"GO-2026-0009.json": osv("GO-2026-0001", "2026-10-01T00:00:00Z", "stdlib")},
		"not JSON":       {"GO-2026-0001.json": {Data: []byte("{")}},
		"no id":          {"GO-2026-0001.json": {Data: []byte(`{"published":"2026-10-01T00:00:00Z"}`)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := build(src, t.TempDir()); err == nil {
				t.Error("built a database, want an error")
			}
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
