package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/example/users/functions/create"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/app"
	reqbody "github.com/example/users/pkg/body"
	"github.com/example/users/pkg/user"
)

// FuzzCreateRequest sends arbitrary bodies with arbitrary Content-Types to
// POST /user on the composed service over a real database. Whatever comes
// in, the answer is one of 201, 400, 409, 413 or 415 (never a 5xx), every
// error is a problem+json body agreeing with its status, the service
// accepts exactly what user.ParseNew accepts, and only a 201 adds a row.
// The hostile-input table is its seed corpus; `go test` runs the seeds,
// `.ci/slow` fuzzes it for a bounded time.
func FuzzCreateRequest(f *testing.F) {
	for _, tc := range hostileCases() {
		if (tc.method == "" || tc.method == http.MethodPost) && tc.path == "" && len(tc.body) <= 2*create.MaxBody && !tc.netHTTP {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			f.Add(ct, tc.body)
		}
	}
	f.Add("application/json", userJSON("fuzz", "fuzz@example.com"))
	f.Add("application/json; charset=UTF-8", userJSON("Fuzz.2", "o'brien+x@example.com"))

	db, cfg := testenv.DB(f)
	fn := app.New(&testenv.Logs{})
	if err := fn.StartConfig(context.Background(), testenv.Config(f, cfg)); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = fn.Stop(context.Background()) })
	count := func(t *testing.T) int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		before := count(t)
		req := httptest.NewRequest(http.MethodPost, "/user", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		fn.ServeHTTP(rec, req)
		status := rec.Code
		after := count(t)

		switch status {
		case http.StatusCreated:
			if after != before+1 {
				t.Fatalf("201 but rows %d -> %d", before, after)
			}
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if after != before {
				t.Fatalf("%d but rows %d -> %d", status, before, after)
			}
			var p testenv.Problem
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%d with Content-Type %q", status, ct)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != status {
				t.Fatalf("%d with problem body %q (%v)", status, rec.Body.Bytes(), err)
			}
		default:
			t.Fatalf("status %d for Content-Type %q body %q: %s", status, contentType, body, rec.Body.Bytes())
		}

		// The service and the parser agree on what is valid JSON input.
		if reqbody.IsJSON(contentType) && len(body) <= create.MaxBody {
			_, perr := user.ParseNew(body)
			if valid := perr == nil; valid != (status == http.StatusCreated || status == http.StatusConflict) {
				t.Fatalf("ParseNew says valid=%v (%v) but the service answered %d", valid, perr, status)
			}
		}
	})
}
