package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/router"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/example/users/api"
)

// contract is api/openapi.yaml, parsed once per test binary: building
// the model and compiling its schemas takes far longer than a request.
type contract struct {
	model     *v3.Document
	validator validator.Validator
	router    router.Router
	schemas   schema_validation.SchemaValidator
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	doc, err := libopenapi.NewDocument(api.Document())
	if err != nil {
		return nil, err
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, err
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &contract{
		model:     &m.Model,
		validator: v,
		router:    router.NewRouter(&m.Model, router.WithPathOnlyMatching()),
		schemas:   schema_validation.NewSchemaValidator(),
	}, nil
})

// maxCapture bounds the copy of a request body kept for validation. The
// service reads at most 64 KiB of a body it accepts; a hostile body can
// be endless.
const maxCapture = 1 << 20

// OpenAPI wraps h so that every request it serves, and the response, is
// checked against api/openapi.yaml; a mismatch fails tb with the method,
// path, status and the validator's messages. Responses pass through
// unchanged and unbuffered (a streamed list still streams); the wrapper
// keeps a copy to validate once the handler returns.
//
// A request the document does not allow is no failure by itself: hostile
// tests send them on purpose. It fails tb only if the service accepted it
// (a status below 400). Requests outside every operation are held to the
// document's general rules (info.description): an unknown path is the
// response NotFound, a routed path with another method is
// MethodNotAllowed with the path's methods in Allow, a non-canonical path
// is a 301.
func OpenAPI(tb testing.TB, h http.Handler) http.Handler {
	tb.Helper()
	c, err := loadContract()
	if err != nil {
		tb.Fatalf("api/openapi.yaml: %v", err)
	}
	var (
		inflight sync.WaitGroup
		mu       sync.Mutex
		done     bool
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			tb.Errorf(format, args...)
		}
	}
	tb.Cleanup(func() {
		// Registered before the server's own cleanup, so it runs after the
		// server has closed: wait for the last handlers, which may still be
		// reporting. A handler stuck past that cannot report any more:
		// testing panics on Errorf after the test.
		waited := make(chan struct{})
		go func() { inflight.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(time.Minute):
		}
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Done()
		in := &teeBody{ReadCloser: r.Body}
		r.Body = in
		rec := &captureWriter{ResponseWriter: w}
		// Taken before the handler, which may change r's header or URL.
		req := r.Clone(context.Background())
		defer func() {
			if v := recover(); v != nil {
				// http.ErrAbortHandler cuts the connection on purpose (a list
				// failing mid-stream): the client sees a broken response, not
				// one the contract could describe. Nothing else reaches here;
				// server.Middleware answers other panics with a 500.
				panic(v)
			}
			rec.finish(w)
			req.Body = io.NopCloser(bytes.NewReader(in.buf.Bytes()))
			resp := &http.Response{
				StatusCode: rec.status,
				Header:     rec.header,
				Body:       io.NopCloser(bytes.NewReader(rec.body.Bytes())),
				Request:    req,
			}
			if r.Method == http.MethodHead {
				// net/http discards what a handler writes for HEAD.
				resp.Body = http.NoBody
			}
			for _, msg := range c.check(req, resp, rec.body.Bytes()) {
				report("OpenAPI: %s %s → %d: %s", r.Method, r.URL.RequestURI(), rec.status, msg)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// check returns what is wrong with the exchange, as the validator says it.
func (c *contract) check(req *http.Request, resp *http.Response, body []byte) []string {
	route, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, router.ErrMethodNotAllowed):
		return c.unrouted(req, resp, body, "MethodNotAllowed", http.StatusMethodNotAllowed, route.PathItem)
	case err != nil:
		if p := req.URL.Path; resp.StatusCode == http.StatusMovedPermanently && p != cleanPath(p) {
			if resp.Header.Get("Location") == "" {
				return []string{"301 without Location"}
			}
			return nil
		}
		return c.unrouted(req, resp, body, "NotFound", http.StatusNotFound, nil)
	}
	var msgs []string
	if ok, errs := c.validator.ValidateHttpRequest(req); !ok && resp.StatusCode < 400 {
		msgs = append(msgs, "the request does not match the document, yet the service accepted it:")
		msgs = append(msgs, messages(errs)...)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if req.Method == http.MethodHead {
		resp.Body = http.NoBody
	}
	if ok, errs := c.validator.ValidateHttpResponse(req, resp); !ok {
		msgs = append(msgs, messages(errs)...)
	}
	return msgs
}

// unrouted checks an answer to a request no operation describes against
// the document's response component name: its status, headers and body,
// and for a 405 that Allow lists exactly item's methods.
func (c *contract) unrouted(req *http.Request, resp *http.Response, body []byte, name string, status int, item *v3.PathItem) []string {
	if resp.StatusCode != status {
		return []string{fmt.Sprintf("no operation describes this request, so the answer must be %d (components.responses.%s)", status, name)}
	}
	comp := c.model.Components.Responses.GetOrZero(name)
	if comp == nil {
		return []string{"the document has no components.responses." + name}
	}
	var msgs []string
	for hn, hd := range comp.Headers.FromOldest() {
		v := resp.Header.Get(hn)
		if v == "" {
			if hd.Required {
				msgs = append(msgs, "missing required header "+hn)
			}
			continue
		}
		if hd.Schema == nil {
			continue
		}
		if ok, errs := c.schemas.ValidateSchemaObject(hd.Schema.Schema(), v); !ok {
			msgs = append(msgs, prefix("header "+hn+": ", messages(errs))...)
		}
	}
	if item != nil {
		if got, want := resp.Header.Get("Allow"), strings.Join(methods(item), ", "); got != want {
			msgs = append(msgs, fmt.Sprintf("Allow %q, but the document's methods for this path are %q", got, want))
		}
	}
	if req.Method == http.MethodHead {
		return msgs
	}
	for ct, mt := range comp.Content.FromOldest() {
		if got, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); got != ct {
			msgs = append(msgs, fmt.Sprintf("Content-Type %q, want %q", got, ct))
			continue
		}
		if ok, errs := c.schemas.ValidateSchemaBytes(mt.Schema.Schema(), body); !ok {
			msgs = append(msgs, prefix("body: ", messages(errs))...)
		}
	}
	return msgs
}

// methods lists the methods a path item has operations for, sorted as
// server.Router writes Allow.
func methods(item *v3.PathItem) []string {
	var ms []string
	for m, op := range map[string]*v3.Operation{
		http.MethodGet: item.Get, http.MethodHead: item.Head, http.MethodPost: item.Post,
		http.MethodPut: item.Put, http.MethodPatch: item.Patch, http.MethodDelete: item.Delete,
		http.MethodOptions: item.Options, http.MethodTrace: item.Trace,
	} {
		if op != nil {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	return ms
}

// cleanPath is the path http.ServeMux redirects p to.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

func messages[E interface{ Error() string }](errs []E) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func prefix(p string, msgs []string) []string {
	for i := range msgs {
		msgs[i] = p + msgs[i]
	}
	return msgs
}

// teeBody keeps a copy of what the handler reads of a request body.
type teeBody struct {
	io.ReadCloser
	buf bytes.Buffer
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if room := maxCapture - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(n, room)])
	}
	return n, err
}

// captureWriter passes a response through and keeps a copy of it: the
// status, the header as sent and the body.
type captureWriter struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.header == nil && code >= 200 {
		c.status, c.header = code, c.ResponseWriter.Header().Clone()
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.header == nil {
		c.status, c.header = http.StatusOK, c.ResponseWriter.Header().Clone()
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// finish records the header of a response the handler never wrote to.
func (c *captureWriter) finish(w http.ResponseWriter) {
	if c.header == nil {
		c.status, c.header = http.StatusOK, w.Header().Clone()
	}
}

// Unwrap lets http.ResponseController reach the connection's Flush and
// deadlines.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
