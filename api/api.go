// Package api holds the service's HTTP contract, an OpenAPI 3.1 document
// (openapi.yaml), and serves it. The tests validate every request and
// response they send through the service against it
// (internal/testenv.OpenAPI), so the document cannot drift from the code.
package api

import (
	_ "embed"
	"net/http"
	"strconv"

	"github.com/example/users/pkg/etag"
)

//go:embed openapi.yaml
var document []byte

// Document returns the OpenAPI document. The caller may not modify it.
func Document() []byte { return document }

// Handler serves the document as application/yaml with a strong ETag, and
// 304 to an If-None-Match that names it, so a client polling for changes
// downloads it once per build.
func Handler() http.Handler {
	tag := etag.Of(document)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", tag)
		if etag.NoneMatch(r.Header.Values("If-None-Match"), tag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/yaml")
		h.Set("Content-Length", strconv.Itoa(len(document)))
		_, _ = w.Write(document)
	})
}
