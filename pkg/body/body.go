// Package body reads request bodies the way every handler here must: JSON
// in UTF-8 only, and never more than a limit.
package body

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/example/users/pkg/problem"
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

// Read returns r's body if it is at most limit bytes. Otherwise its error
// is the *problem.Problem to answer with: 413 for a larger body (refused
// from Content-Length before anything is read when the client declares
// it), 400 for one that could not be read.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, tooLarge(limit)
	}
	if err != nil {
		return nil, problem.New(http.StatusBadRequest, "the request body could not be read")
	}
	return data, nil
}

func tooLarge(limit int64) *problem.Problem {
	return problem.New(http.StatusRequestEntityTooLarge, "the request body must be at most "+strconv.FormatInt(limit, 10)+" bytes")
}
