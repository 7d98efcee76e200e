// Package list serves GET /user: every user, or one keyset page of them.
package list

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/example/users/pkg/problem"
	"github.com/example/users/pkg/user"
)

// MaxLimit is the largest page a client may ask for.
const MaxLimit = 1000

// flushAt is how much JSON of the full list is gathered before it is
// written. Until the first write the status can still change, so an early
// database error is a clean 503; after it, rows go out as they are read.
const flushAt = 32 << 10

// Lister walks users in id order; see store.Store.List.
type Lister interface {
	List(ctx context.Context, after int64, limit int, fn func(*user.User) error) error
}

// Handler serves the list.
type Handler struct {
	users  Lister
	logger *slog.Logger
	// bufs recycles response buffers. Without it a list of 100 users
	// cost a fifth more CPU per request, mostly the collector's work on a
	// fresh buffer per request (docs/performance.md).
	bufs sync.Pool
}

// maxPooled is the largest buffer kept for reuse; a rare big page's
// buffer goes to the garbage collector instead of staying in the pool.
const maxPooled = 256 << 10

func (h *Handler) getBuf() *[]byte {
	if b, ok := h.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, flushAt+4096)
	return &b
}

func (h *Handler) putBuf(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		h.bufs.Put(b)
	}
}

// New returns the list handler.
func New(users Lister, logger *slog.Logger) *Handler {
	return &Handler{users: users, logger: logger}
}

type page struct {
	after int64
	limit int // 0: everything
}

func parsePage(q url.Values) (page, error) {
	var p page
	var errs []user.FieldError
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(vs[0])
		if len(vs) != 1 || err != nil || n < 1 || n > MaxLimit {
			errs = append(errs, user.FieldError{Field: "limit", Message: "must be one integer from 1 to 1000"})
		}
		p.limit = n
	}
	if vs, ok := q["after"]; ok {
		n, err := strconv.ParseInt(vs[0], 10, 64)
		if len(vs) != 1 || err != nil || n < 0 {
			errs = append(errs, user.FieldError{Field: "after", Message: "must be one non-negative integer id"})
		}
		p.after = n
	}
	if len(errs) > 0 {
		return page{}, &user.ValidationError{Errors: errs}
	}
	return p, nil
}

// ServeHTTP writes a JSON array of users ordered by id.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// url.ParseQuery, not URL.Query: the latter silently drops pairs it
	// cannot decode, so ?limit=%zz would list everything instead of 400.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		problem.Error(w, r, h.logger, &user.ValidationError{Errors: []user.FieldError{{Field: "query", Message: "is not a valid query string"}}})
		return
	}
	p, err := parsePage(q)
	if err != nil {
		problem.Error(w, r, h.logger, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	h.serve(w, r, p)
}

var errWrite = errors.New("write to client failed")

// serve writes the users of p as one JSON array, encoding each row (with
// AppendJSON, see there why) as the database cursor yields it. The full
// list goes out every flushAt bytes. A page is held whole, at most
// MaxLimit rows: it reads one row more than asked to learn whether a next
// page exists, and the Link header that says so must be sent before the
// body.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, p page) {
	pb := h.getBuf()
	defer h.putBuf(pb)
	buf := append(*pb, '[')
	started := false // whether anything was written to w
	n := 0
	var last int64
	fetch := 0
	if p.limit > 0 {
		fetch = p.limit + 1
	}
	err := h.users.List(r.Context(), p.after, fetch, func(u *user.User) error {
		if p.limit > 0 && n == p.limit {
			n++ // the row after the page: there is a next one
			return nil
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = u.AppendJSON(buf)
		last = u.ID
		n++
		if p.limit == 0 && len(buf) >= flushAt {
			started = true
			if _, err := w.Write(buf); err != nil {
				return errWrite
			}
			buf = buf[:0]
		}
		return nil
	})
	switch {
	case err == nil:
		if p.limit > 0 && n > p.limit {
			next := url.Values{"after": {strconv.FormatInt(last, 10)}, "limit": {strconv.Itoa(p.limit)}}
			w.Header().Set("Link", "<"+r.URL.Path+"?"+next.Encode()+`>; rel="next"`)
		}
		buf = append(buf, ']', '\n')
		if !started {
			w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
		}
		_, _ = w.Write(buf)
		*pb = buf // keep what it grew to
	case errors.Is(err, errWrite):
		// The client went away; nothing more to tell it.
	case !started:
		w.Header().Del("Content-Type")
		problem.Error(w, r, h.logger, err)
	default:
		// The status line is gone; a truncated body is the only honest
		// signal left. Aborting the connection makes the client see an
		// error instead of a short but valid-looking array.
		h.logger.ErrorContext(r.Context(), "list failed mid-stream", slog.String("error", err.Error()))
		panic(http.ErrAbortHandler)
	}
}
