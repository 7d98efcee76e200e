package api_test

import (
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"

	"github.com/example/users/api"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/server"
)

// operations lists the document's operations as "METHOD /path", sorted.
func operations(t *testing.T) []string {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.Document())
	if err != nil {
		t.Fatal(err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for p, item := range m.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().KeysFromOldest() {
			ops = append(ops, strings.ToUpper(method)+" "+p)
		}
	}
	slices.Sort(ops)
	return ops
}

// readmeEndpoints lists the "METHOD /path" pairs of README.md's Endpoints
// table, sorted.
func readmeEndpoints(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Endpoints\n")
	if !ok {
		t.Fatal(`README.md has no "## Endpoints" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	pair := regexp.MustCompile("`([A-Z]+) (/[^` ]*)`")
	var eps []string
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, m := range pair.FindAllStringSubmatch(cells[1], -1) {
			eps = append(eps, m[1]+" "+m[2])
		}
	}
	slices.Sort(eps)
	return eps
}

// TestDocumentMatchesREADME checks that README.md's Endpoints table lists
// exactly the document's operations. The table names GET only; the
// document must have HEAD exactly where it has GET, as the router serves.
func TestDocumentMatchesREADME(t *testing.T) {
	ops := operations(t)
	var withoutHead []string
	for _, op := range ops {
		if p, ok := strings.CutPrefix(op, "HEAD "); ok {
			if !slices.Contains(ops, "GET "+p) {
				t.Errorf("the document has HEAD %s without GET", p)
			}
			continue
		}
		if p, ok := strings.CutPrefix(op, "GET "); ok && !slices.Contains(ops, "HEAD "+p) {
			t.Errorf("the document has GET %s without HEAD", p)
		}
		withoutHead = append(withoutHead, op)
	}
	if eps := readmeEndpoints(t); !slices.Equal(eps, withoutHead) {
		t.Errorf("README.md's Endpoints table lists\n  %v\nthe document (HEAD aside)\n  %v", eps, withoutHead)
	}
}

// TestDocumentMatchesRoutes checks that the document describes exactly the
// routes the composed service registers, methods included.
func TestDocumentMatchesRoutes(t *testing.T) {
	_, _, fn := testenv.Service(t, nil)
	var routes []string
	for _, p := range slices.Sorted(maps.Keys(fn.Routes())) {
		for _, m := range fn.Routes()[p] {
			// "/{$}" is ServeMux's exact "/": OpenAPI's "/".
			routes = append(routes, m+" "+strings.TrimSuffix(p, "{$}"))
		}
	}
	slices.Sort(routes)
	if ops := operations(t); !slices.Equal(ops, routes) {
		t.Errorf("the service routes\n  %v\nthe document describes\n  %v", routes, ops)
	}
	if len(routes) == 0 || !slices.Contains(routes, http.MethodGet+" /user") {
		t.Errorf("routes %v lack GET /user", routes)
	}
}

// TestHandlerMatchesDocument serves Handler at its path, behind the
// service's middleware, through the contract check.
func TestHandlerMatchesDocument(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.yaml", api.Handler())
	srv := httptest.NewServer(testenv.OpenAPI(t, server.Middleware(mux, slog.New(slog.DiscardHandler), nil)))
	defer srv.Close()
	get, err := http.Get(srv.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	tag := get.Header.Get("ETag")
	for _, tc := range []struct {
		method, ifNoneMatch string
		want                int
	}{
		{http.MethodGet, "", http.StatusOK},
		{http.MethodHead, "", http.StatusOK},
		{http.MethodGet, tag, http.StatusNotModified},
		{http.MethodHead, "*", http.StatusNotModified},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/openapi.yaml", nil)
		if tc.ifNoneMatch != "" {
			req.Header.Set("If-None-Match", tc.ifNoneMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s If-None-Match %q: status %d, want %d", tc.method, tc.ifNoneMatch, resp.StatusCode, tc.want)
		}
	}
}
