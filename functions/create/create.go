// Package create serves POST /user.
package create

import (
	"context"
	"encoding/json"
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
	u, err := h.create(w, r)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	b, _ := json.Marshal(u) // a User always marshals
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/user/"+strconv.FormatInt(u.ID, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

// create reads the new user from r's body and stores it.
func (h *Handler) create(w http.ResponseWriter, r *http.Request) (user.User, error) {
	if !body.IsJSON(r.Header.Get("Content-Type")) {
		return user.User{}, problem.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	data, err := body.Read(w, r, MaxBody)
	if err != nil {
		return user.User{}, err
	}
	n, err := user.ParseNew(data)
	if err != nil {
		return user.User{}, err
	}
	return h.users.Create(r.Context(), n)
}
