// Package get serves GET /user/{id}.
package get

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/example/users/pkg/etag"
	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/user"
)

// Getter finds one user; see store.Store.Get.
type Getter interface {
	Get(ctx context.Context, id int64) (user.User, error)
}

// Handler serves one user.
type Handler struct {
	users  Getter
	logger *slog.Logger
}

// New returns the get handler. It reads the id from the path value "id".
func New(users Getter, logger *slog.Logger) *Handler {
	return &Handler{users: users, logger: logger}
}

// ServeHTTP answers 200 with the user and its ETag, 304 when the request's
// If-None-Match names that ETag, or 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		problem.Error(w, r, h.logger, user.ErrNotFound)
		return
	}
	u, err := h.users.Get(r.Context(), id)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	b, _ := json.Marshal(u) // a User always marshals
	b = append(b, '\n')
	tag := etag.Of(b)
	w.Header().Set("ETag", tag)
	if etag.NoneMatch(r.Header.Values("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}
