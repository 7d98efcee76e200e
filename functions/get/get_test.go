package get_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/user"
)

func TestGet(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	resp, err := http.Post(srv.URL+"/user", "application/json", strings.NewReader(`{"username":"g","email":"g@example.com"}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", resp, err)
	}
	loc := resp.Header.Get("Location")
	_ = resp.Body.Close()

	resp, err = http.Get(srv.URL + loc)
	if err != nil {
		t.Fatal(err)
	}
	var u user.User
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&u) != nil || u.Username != "g" {
		t.Fatalf("GET %s: %d %+v", loc, resp.StatusCode, u)
	}
	_ = resp.Body.Close()

	for _, path := range []string{"/user/999999", "/user/0", "/user/-1", "/user/abc", "/user/1.0", "/user/99999999999999999999"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		testenv.ReadProblem(t, resp, http.StatusNotFound)
	}
}

// TestETag: GET /user/{id} carries a strong ETag that stays the same for
// the same user and differs between users; If-None-Match naming it (in any
// of RFC 9110's forms) is 304 without a body; another tag is a 200.
func TestETag(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	var locs []string
	for _, name := range []string{"e1", "e2"} {
		resp, err := http.Post(srv.URL+"/user", "application/json", strings.NewReader(`{"username":"`+name+`","email":"`+name+`@example.com"}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create: %v %v", resp, err)
		}
		_ = resp.Body.Close()
		locs = append(locs, resp.Header.Get("Location"))
	}
	get := func(method, path string, inm ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for _, v := range inm {
			req.Header.Add("If-None-Match", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	r1, _ := get(http.MethodGet, locs[0])
	r2, _ := get(http.MethodGet, locs[1])
	tag := r1.Header.Get("ETag")
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' || tag == r2.Header.Get("ETag") {
		t.Fatalf("ETags %q and %q: want strong, quoted and different per user", tag, r2.Header.Get("ETag"))
	}
	if again, _ := get(http.MethodGet, locs[0]); again.Header.Get("ETag") != tag {
		t.Fatalf("ETag changed from %q to %q for the same user", tag, again.Header.Get("ETag"))
	}
	for _, tt := range []struct {
		name   string
		method string
		inm    []string
		status int
	}{
		{"the tag", http.MethodGet, []string{tag}, http.StatusNotModified},
		{"weak form", http.MethodGet, []string{"W/" + tag}, http.StatusNotModified},
		{"in a list", http.MethodGet, []string{`"other", ` + tag}, http.StatusNotModified},
		{"in a second field", http.MethodGet, []string{`"other"`, tag}, http.StatusNotModified},
		{"any", http.MethodGet, []string{"*"}, http.StatusNotModified},
		{"HEAD", http.MethodHead, []string{tag}, http.StatusNotModified},
		{"another user's", http.MethodGet, []string{r2.Header.Get("ETag")}, http.StatusOK},
		{"unquoted", http.MethodGet, []string{strings.Trim(tag, `"`)}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(tt.method, locs[0], tt.inm...)
			if resp.StatusCode != tt.status || resp.Header.Get("ETag") != tag {
				t.Fatalf("%d with ETag %q, want %d with %q", resp.StatusCode, resp.Header.Get("ETag"), tt.status, tag)
			}
			if tt.status == http.StatusNotModified && len(body) != 0 {
				t.Fatalf("304 with a body: %q", body)
			}
		})
	}
	if resp, _ := get(http.MethodGet, "/user/999999", "*"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("If-None-Match: * for no user: %d, want 404", resp.StatusCode)
	}
}
