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
