// Package create serves POST /user.
package create

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/example/users/pkg/body"
	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/user"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Creator stores a new user; see store.Store.Create and CreateOnce.
type Creator interface {
	Create(ctx context.Context, u user.New) (user.User, error)
	CreateOnce(ctx context.Context, key string, u user.New) (user.User, bool, error)
}

// KeyHeader is the IETF httpapi draft's request header that makes a
// POST safe to retry.
const KeyHeader = "Idempotency-Key"

// maxKey bounds a key's length: a UUID or a hash fits many times over,
// and the key is stored.
const maxKey = 255

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
	u, replayed, err := h.create(w, r)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	b, _ := json.Marshal(u) // a User always marshals
	b = append(b, '\n')
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/user/"+strconv.FormatInt(u.ID, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

// create reads the new user from r's body and stores it, once per
// idempotency key if r has one; replayed says an earlier request with the
// key created it.
func (h *Handler) create(w http.ResponseWriter, r *http.Request) (u user.User, replayed bool, err error) {
	key, keyed, err := idempotencyKey(r.Header)
	if err != nil {
		return user.User{}, false, err
	}
	if !body.IsJSON(r.Header.Get("Content-Type")) {
		return user.User{}, false, problem.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	data, err := body.Read(w, r, MaxBody)
	if err != nil {
		return user.User{}, false, err
	}
	n, err := user.ParseNew(data)
	if err != nil {
		return user.User{}, false, err
	}
	if keyed {
		return h.users.CreateOnce(r.Context(), key, n)
	}
	u, err = h.users.Create(r.Context(), n)
	return u, false, err
}

// idempotencyKey reads the Idempotency-Key header: a Structured Field
// string, as the draft defines it ("..." with \" and \\ escapes), or, as
// most clients send it, a bare token of visible ASCII. keyed is false
// when there is none.
func idempotencyKey(h http.Header) (key string, keyed bool, err error) {
	vals := h.Values(KeyHeader)
	if len(vals) == 0 {
		return "", false, nil
	}
	bad := func(msg string) error {
		return &user.ValidationError{Errors: []user.FieldError{{Field: KeyHeader, Message: msg}}}
	}
	if len(vals) > 1 {
		return "", false, bad("must be sent once")
	}
	v := vals[0]
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			switch {
			case c == '\\' && i+1 < len(v)-1 && (v[i+1] == '"' || v[i+1] == '\\'):
				i++
				b.WriteByte(v[i])
			case c == '"' || c == '\\' || c < 0x20 || c > 0x7e:
				return "", false, bad("must be a string of printable ASCII with \\\" and \\\\ escaped, or a token")
			default:
				b.WriteByte(c)
			}
		}
		v = b.String()
	} else {
		for i := 0; i < len(v); i++ {
			if v[i] <= 0x20 || v[i] > 0x7e {
				return "", false, bad("must be visible ASCII without spaces, or a quoted string")
			}
		}
	}
	if v == "" || len(v) > maxKey {
		return "", false, bad("must be 1 to 255 characters long")
	}
	return v, true, nil
}
