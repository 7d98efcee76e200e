// Package body reads request bodies the way every handler here must: JSON
// in UTF-8 only, and never more than a limit.
package body

import (
	"io"
	"mime"
	"net/http"
	"strings"
)

// IsJSON reports whether a media type names JSON in UTF-8.
func IsJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// Read returns r's body if it is at most limit bytes. A larger body gives
// a *http.MaxBytesError, refused from Content-Length before anything is
// read when the client declares it.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}
