// Package create serves POST /user.
package create

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/example/users/pkg/body"
	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/user"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Creator stores a new user; see store.Store.Create.
type Creator interface {
	Create(ctx context.Context, u user.New) (user.User, error)
}

// Handler serves user creation.
type Handler struct {
	users  Creator
	logger *slog.Logger
}

// New returns the create handler.
func New(users Creator, logger *slog.Logger) *Handler {
	return &Handler{users: users, logger: logger}
}

// ServeHTTP creates a user from a JSON body and answers 201 with it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !body.IsJSON(r.Header.Get("Content-Type")) {
		problem.Write(w, problem.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json"))
		return
	}
	data, err := body.Read(w, r, MaxBody)
	if err != nil {
		if _, ok := err.(*http.MaxBytesError); !ok {
			problem.Write(w, problem.New(http.StatusBadRequest, "the request body could not be read"))
			return
		}
		problem.Error(w, r, h.logger, err)
		return
	}
	n, err := user.ParseNew(data)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	u, err := h.users.Create(r.Context(), n)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	b := u.AppendJSON(make([]byte, 0, 256))
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/user/"+strconv.FormatInt(u.ID, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}
