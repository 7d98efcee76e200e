package list_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/functions/list"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

func seed(t *testing.T, db *bun.DB, n int) {
	t.Helper()
	_, err := db.ExecContext(context.Background(),
		"INSERT INTO users (username, email) SELECT 'user' || i, 'user' || i || '@example.com' FROM generate_series(1, ?) AS i", n)
	if err != nil {
		t.Fatal(err)
	}
}

func getUsers(t *testing.T, url string) ([]user.User, *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var us []user.User
	if err := json.Unmarshal(body, &us); err != nil {
		t.Fatalf("body is not a JSON array of users: %v: %.200s", err, body)
	}
	return us, resp
}

func TestListEmptyIsArray(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	resp, err := http.Get(srv.URL + "/user")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("empty list: %d %q", resp.StatusCode, b)
	}
}

// TestListAll covers more rows than one write buffer holds, so the
// streamed and chunked path is exercised.
func TestListAll(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	const n = 3000
	seed(t, db, n)
	us, _ := getUsers(t, srv.URL+"/user")
	if len(us) != n {
		t.Fatalf("%d users, want %d", len(us), n)
	}
	for i, u := range us {
		if i > 0 && u.ID <= us[i-1].ID {
			t.Fatalf("not ordered by id at %d: %d after %d", i, u.ID, us[i-1].ID)
		}
		if u.Username == "" || u.Email == "" || u.CreatedAt.IsZero() {
			t.Fatalf("incomplete user %+v", u)
		}
	}
}

func TestPagination(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	seed(t, db, 25)
	var all []user.User
	next := "/user?limit=10"
	pages := 0
	for next != "" {
		us, resp := getUsers(t, srv.URL+next)
		all = append(all, us...)
		pages++
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			if !strings.HasSuffix(link, `>; rel="next"`) || !strings.HasPrefix(link, "</user?") {
				t.Fatalf("Link = %q", link)
			}
			next = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || len(all) != 25 {
		t.Fatalf("%d pages, %d users; want 3 pages of 25 users", pages, len(all))
	}
	for i, u := range all {
		if i > 0 && u.ID <= all[i-1].ID {
			t.Fatal("pages overlap or are out of order")
		}
	}
	// An exact last page has no next link.
	if _, resp := getUsers(t, srv.URL+"/user?limit=25"); resp.Header.Get("Link") != "" {
		t.Errorf("Link on the last page: %q", resp.Header.Get("Link"))
	}
	us, _ := getUsers(t, srv.URL+fmt.Sprintf("/user?after=%d", all[19].ID))
	if len(us) != 5 || us[0].ID != all[20].ID {
		t.Errorf("after without limit: %d users", len(us))
	}
}

func TestBadPageParameters(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=-1", "limit=ten", "limit=", "limit=1.5", "limit=1&limit=2",
		"after=-1", "after=x", "after=", "after=99999999999999999999", "limit=5&after=abc",
		"limit=%zz", "limit=1;x=2", "after=%",
	} {
		t.Run(q, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/user?" + q)
			if err != nil {
				t.Fatal(err)
			}
			p := testenv.ReadProblem(t, resp, http.StatusBadRequest)
			if len(p.Errors) == 0 || p.Errors[0].Field != "limit" && p.Errors[0].Field != "after" && p.Errors[0].Field != "query" {
				t.Fatalf("problem %+v names no parameter", p)
			}
		})
	}
}

// gate passes rows through from the real store but holds the walk after
// the first rows until the test has seen bytes arrive at the client: the
// list must not wait for the last row before it starts answering.
type gate struct {
	users   *store.Store
	after   int
	reached chan struct{}
	release chan struct{}
}

func (g *gate) List(ctx context.Context, after int64, limit int, fn func(*user.User) error) error {
	n := 0
	return g.users.List(ctx, after, limit, func(u *user.User) error {
		n++
		if n == g.after {
			close(g.reached)
			select {
			case <-g.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return fn(u)
	})
}

func TestListStreamsBeforeTheLastRow(t *testing.T) {
	db, cfg := testenv.DB(t)
	seed(t, db, 2000)
	g := &gate{users: store.New(db, cfg.QueryTimeout), after: 1000, reached: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(list.New(g, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(srv.URL)
		got <- result{resp, err}
	}()
	<-g.reached
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		close(g.release)
		t.Fatal("no response while the database walk was half done: the list is buffered, not streamed")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(r.resp.Body, first); err != nil || first[0] != '[' {
		t.Fatalf("first byte %q, %v", first, err)
	}
	close(g.release)
	rest, _ := io.ReadAll(r.resp.Body)
	var us []user.User
	if err := json.Unmarshal(append(first, rest...), &us); err != nil || len(us) != 2000 {
		t.Fatalf("%d users, %v", len(us), err)
	}
}

func TestDatabaseDownIs503(t *testing.T) {
	cfg := testenv.Unreachable(t)
	db := store.Open(cfg.Options(), "test")
	defer db.Close()
	srv := httptest.NewServer(list.New(store.New(db, cfg.QueryTimeout), slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, q := range []string{"", "?limit=10"} {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		testenv.ReadProblem(t, resp, http.StatusServiceUnavailable)
	}
}
