package get_test

import (
	"encoding/json"
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
