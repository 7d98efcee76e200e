package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/example/users/pkg/etag"
)

// TestValidatorRejectsBrokenDocument: the check TestDocument relies on
// fails a document that breaks the specification's schema.
func TestValidatorRejectsBrokenDocument(t *testing.T) {
	broken := []byte("openapi: 3.1.0\ninfo: {title: broken}\npaths:\n  /x:\n    get:\n      responses:\n        '200': {description: 7, content: []}\n")
	doc, err := libopenapi.NewDocument(broken)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return // refused already
	}
	if ok, _ := v.ValidateDocument(); ok {
		t.Fatal("a document without info.version and with a numeric description passed ValidateDocument")
	}
}

// TestDocument checks openapi.yaml against the OpenAPI 3.1 specification's
// schema, with the same library the tests validate traffic with, and that
// its model builds (every $ref resolves).
func TestDocument(t *testing.T) {
	doc, err := libopenapi.NewDocument(Document())
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", v)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("%v", e)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  line %d: %s (%s)", se.Line, se.Reason, se.KeywordLocation)
			}
		}
	}
}

func TestHandler(t *testing.T) {
	tag := etag.Of(Document())
	tests := []struct {
		name        string
		method      string
		ifNoneMatch string
		want        int
		wantBody    bool
	}{
		{"GET", http.MethodGet, "", http.StatusOK, true},
		{"HEAD", http.MethodHead, "", http.StatusOK, false},
		{"GET with its ETag", http.MethodGet, tag, http.StatusNotModified, false},
		{"GET with its weak ETag", http.MethodGet, "W/" + tag, http.StatusNotModified, false},
		{"GET with a list naming it", http.MethodGet, `"x", ` + tag, http.StatusNotModified, false},
		{"GET with *", http.MethodGet, "*", http.StatusNotModified, false},
		{"GET with another ETag", http.MethodGet, `"x"`, http.StatusOK, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/openapi.yaml", nil)
			if tc.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tc.ifNoneMatch)
			}
			rec := httptest.NewRecorder()
			Handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if got := rec.Header().Get("ETag"); got != tag {
				t.Errorf("ETag %q, want %q", got, tag)
			}
			if tc.want == http.StatusOK {
				if ct := rec.Header().Get("Content-Type"); ct != "application/yaml" {
					t.Errorf("Content-Type %q, want application/yaml", ct)
				}
			}
			if tc.wantBody && rec.Body.String() != string(Document()) {
				t.Errorf("body is not the document (%d bytes)", rec.Body.Len())
			}
		})
	}
}
