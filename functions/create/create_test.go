package create_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/example/users/functions/create"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

func post(t *testing.T, url, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestCreate(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	resp := post(t, srv.URL+"/user", "application/json", `{"username":"Alice","email":"Alice@Example.com"}`)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var u user.User
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		t.Fatal(err)
	}
	if u.ID < 1 || u.Username != "Alice" || u.Email != "Alice@Example.com" || u.CreatedAt.IsZero() {
		t.Fatalf("created %+v", u)
	}
	if loc := resp.Header.Get("Location"); loc != fmt.Sprintf("/user/%d", u.ID) {
		t.Errorf("Location = %q", loc)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	// The Location answers with the same user.
	got, err := http.Get(srv.URL + resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	var again user.User
	if err := json.NewDecoder(got.Body).Decode(&again); err != nil || again.ID != u.ID || !again.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("GET %s = %+v, %v", resp.Header.Get("Location"), again, err)
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

func TestCreateRejects(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	if r := post(t, srv.URL+"/user", "application/json", `{"username":"taken","email":"taken@example.com"}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("seed user: %d", r.StatusCode)
	}
	big := `{"username":"a","email":"` + strings.Repeat("x", create.MaxBody) + `@b.c"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		field       string // field named in errors, if any
	}{
		{"no content type", "", `{"username":"a","email":"a@b.c"}`, 415, ""},
		{"text/plain", "text/plain", `{"username":"a","email":"a@b.c"}`, 415, ""},
		{"form", "application/x-www-form-urlencoded", `username=a&email=a@b.c`, 415, ""},
		{"latin1 charset", "application/json; charset=iso-8859-1", `{"username":"a","email":"a@b.c"}`, 415, ""},
		{"malformed content type", "application/json; ===", `{"username":"a","email":"a@b.c"}`, 415, ""},
		{"too large", "application/json", big, 413, ""},
		{"empty", "application/json", ``, 400, "body"},
		{"broken json", "application/json", `{"username":`, 400, "body"},
		{"unknown field", "application/json", `{"username":"a","email":"a@b.c","id":7}`, 400, "id"},
		{"wrong type", "application/json", `{"username":["a"],"email":"a@b.c"}`, 400, "username"},
		{"trailing data", "application/json", `{"username":"a","email":"a@b.c"}[]`, 400, "body"},
		{"bad username", "application/json", `{"username":"-a","email":"a@b.c"}`, 400, "username"},
		{"bad email", "application/json", `{"username":"a","email":"not-an-email"}`, 400, "email"},
		{"duplicate username", "application/json", `{"username":"taken","email":"other@example.com"}`, 409, "username"},
		{"duplicate username other case", "application/json", `{"username":"TaKeN","email":"other@example.com"}`, 409, "username"},
		{"duplicate email other case", "application/json", `{"username":"other","email":"TAKEN@example.COM"}`, 409, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testenv.ReadProblem(t, post(t, srv.URL+"/user", tt.contentType, tt.body), tt.status)
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
				t.Fatalf("problem %+v does not name field %q", p, tt.field)
			}
		})
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("rejected requests changed the table: %d rows, want 1", n)
	}
}

func TestCharsetUTF8Accepted(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	r := post(t, srv.URL+"/user", "application/json; charset=UTF-8", `{"username":"u","email":"u@b.c"}`)
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", r.StatusCode)
	}
}

// TestConcurrentSameUsername: the unique index, not a check before the
// insert, decides; exactly one request wins and none fails with a 5xx.
func TestConcurrentSameUsername(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	const n = 50
	codes := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"username":"same","email":"same%d@example.com"}`, i)
			resp, err := http.Post(srv.URL+"/user", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[201] != 1 || count[409] != n-1 {
		t.Fatalf("status counts %v, want one 201 and %d 409", count, n-1)
	}
	if rows := testenv.CountUsers(t, db); rows != 1 {
		t.Fatalf("%d rows, want 1", rows)
	}
}

func TestDatabaseDownIs503(t *testing.T) {
	cfg := testenv.Unreachable(t)
	db := store.Open(cfg.Options(), "test")
	defer db.Close()
	h := create.New(store.New(db, cfg.QueryTimeout), slog.New(slog.DiscardHandler))
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/user", strings.NewReader(`{"username":"a","email":"a@b.c"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	p := testenv.ReadProblem(t, rec.Result(), http.StatusServiceUnavailable)
	if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(p.Detail, "dial") {
		t.Errorf("503 detail leaks internals: %q", p.Detail)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// keyed is a POST /user with Idempotency-Key values keys; it returns the
// status, the headers and the body.
func keyed(t *testing.T, url, body string, keys ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/user", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestIdempotencyKey: a retry with the key and body gets the first answer
// (status, body, Location) and creates nothing; the key in either of the
// draft's spellings is one key; another body is 422; a bad key is 400
// naming the header, and changes nothing.
func TestIdempotencyKey(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	const alice = `{"username":"alice","email":"alice@example.com"}`
	status, h, first := keyed(t, srv.URL, alice, "8e03978e-40d5-43e8-bc93-6894a57f9324")
	if status != http.StatusCreated || h.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", status, h, first)
	}
	loc := h.Get("Location")
	for _, tt := range []struct {
		name, body, key string
		status          int
		problemType     string
	}{
		{"retry", alice, "8e03978e-40d5-43e8-bc93-6894a57f9324", http.StatusCreated, ""},
		{"retry, the key as a Structured Field string", alice, `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, http.StatusCreated, ""},
		{"retry, the same user in other JSON", `{ "email": "alice@example.com", "username": "alice" }`, "8e03978e-40d5-43e8-bc93-6894a57f9324", http.StatusCreated, ""},
		{"same key, another body", `{"username":"bob","email":"bob@example.com"}`, "8e03978e-40d5-43e8-bc93-6894a57f9324", http.StatusUnprocessableEntity, "urn:problem:users:idempotency-key-reused"},
		{"empty key", alice, "", http.StatusBadRequest, "urn:problem:users:validation"},
		{"empty string key", alice, `""`, http.StatusBadRequest, "urn:problem:users:validation"},
		{"key with a space", alice, "a b", http.StatusBadRequest, "urn:problem:users:validation"},
		{"key with non-ASCII", alice, "caf\u00e9", http.StatusBadRequest, "urn:problem:users:validation"},
		{"key over 255 characters", alice, strings.Repeat("k", 256), http.StatusBadRequest, "urn:problem:users:validation"},
		{"string with a bare quote", alice, `"a"b"`, http.StatusBadRequest, "urn:problem:users:validation"},
		{"string with a bad escape", alice, `"a\nb"`, http.StatusBadRequest, "urn:problem:users:validation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := keyed(t, srv.URL, tt.body, tt.key)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.status == http.StatusCreated {
				if body != first || h.Get("Location") != loc || h.Get("Idempotent-Replayed") != "true" {
					t.Fatalf("replay: %s, Location %q, Idempotent-Replayed %q; want %s, %q, true", body, h.Get("Location"), h.Get("Idempotent-Replayed"), first, loc)
				}
				return
			}
			var p testenv.Problem
			if err := json.Unmarshal([]byte(body), &p); err != nil || p.Type != tt.problemType {
				t.Fatalf("problem %s, want type %s", body, tt.problemType)
			}
			if tt.status == http.StatusBadRequest && (len(p.Errors) != 1 || p.Errors[0].Field != "Idempotency-Key") {
				t.Errorf("400 does not name the header: %s", body)
			}
		})
	}
	if status, _, body := keyed(t, srv.URL, alice, "one", "two"); status != http.StatusBadRequest {
		t.Errorf("two Idempotency-Key fields: %d %s, want 400", status, body)
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
	// A new key is a new request: alice is taken.
	if status, _, body := keyed(t, srv.URL, alice, "another"); status != http.StatusConflict || !strings.Contains(body, "urn:problem:users:conflict") {
		t.Fatalf("new key, taken name: %d %s", status, body)
	}
}

// TestIdempotencyKeyConcurrentRetries: 100 requests with one key at once
// create one user and get 100 identical answers, the first one's.
func TestIdempotencyKeyConcurrentRetries(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	const n = 100
	type answer struct {
		status   int
		location string
		body     string
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, h, body := keyed(t, srv.URL, `{"username":"race","email":"race@example.com"}`, "one-key")
			answers <- answer{status, h.Get("Location"), body}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	var first *answer
	for a := range answers {
		if a.status != http.StatusCreated {
			t.Fatalf("answer %d %s, want 201", a.status, a.body)
		}
		if first == nil {
			first = &a
		} else if a != *first {
			t.Fatalf("answers differ: %+v and %+v", a, *first)
		}
	}
	if rows := testenv.CountUsers(t, db); rows != 1 {
		t.Fatalf("%d users, want 1", rows)
	}
}
