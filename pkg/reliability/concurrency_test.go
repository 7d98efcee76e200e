//go:build slow

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
)

// race fires n creates at once (all released by one close) and returns
// the statuses and bodies.
func race(t *testing.T, base string, n int, user func(i int) (string, string)) ([]int, [][]byte) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name, email := user(i)
			<-gate
			s, b, err := postUser(context.Background(), c, base, name, email)
			if err != nil {
				t.Errorf("create %d: %v", i, err)
			}
			statuses[i], bodies[i] = s, b
		}()
	}
	close(gate)
	wg.Wait()
	return statuses, bodies
}

// TestSlowConcurrentCreates checks that the database, not a check-then-
// insert in the service, decides uniqueness: 100 simultaneous creates of
// one username (in differing letter case) give exactly one 201 and 99
// 409s naming the username, and 100 simultaneous distinct creates give
// 100 rows. The .ci/slow line runs it under -race.
func TestSlowConcurrentCreates(t *testing.T) {
	const n = 100
	db, cfg := testenv.DB(t)
	base, _ := serveApp(t, cfg, nil)

	t.Run("one username", func(t *testing.T) {
		statuses, bodies := race(t, base, n, func(i int) (string, string) {
			name := "racer"
			if i%2 == 1 {
				name = "RACER"
			}
			return name, fmt.Sprintf("racer%d@example.com", i)
		})
		counts := map[int]int{}
		for i, s := range statuses {
			counts[s]++
			if s == http.StatusConflict {
				var p testenv.Problem
				if err := json.Unmarshal(bodies[i], &p); err != nil || len(p.Errors) != 1 || p.Errors[0].Field != "username" {
					t.Errorf("409 body %s, want a conflict on username", bodies[i])
				}
			}
		}
		if counts[http.StatusCreated] != 1 || counts[http.StatusConflict] != n-1 {
			t.Errorf("statuses %v, want exactly one 201 and %d 409", counts, n-1)
		}
		var rows int
		if err := db.QueryRow("SELECT count(*) FROM users WHERE lower(username) = 'racer'").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Errorf("%d rows for racer, want 1", rows)
		}
	})

	t.Run("distinct usernames", func(t *testing.T) {
		before := len(snapshot(t, db))
		statuses, bodies := race(t, base, n, func(i int) (string, string) {
			name := fmt.Sprintf("distinct%d", i)
			return name, name + "@example.com"
		})
		want := map[int64]string{}
		for i, s := range statuses {
			if s != http.StatusCreated {
				t.Errorf("create %d: status %d %s", i, s, bodies[i])
				continue
			}
			var u createdUser
			if err := json.Unmarshal(bodies[i], &u); err != nil {
				t.Fatal(err)
			}
			want[u.ID] = u.Username
		}
		rows := snapshot(t, db)
		added := 0
		for _, r := range rows {
			if strings.HasPrefix(r.Username, "distinct") {
				added++
			}
		}
		if len(rows)-before != n || added != n || len(want) != n {
			t.Errorf("%d rows added (%d distinct ids answered), want %d", len(rows)-before, len(want), n)
		}
		if missing := missingIDs(t, db, want); len(missing) > 0 {
			t.Errorf("answered ids not stored: %v", missing)
		}
	})
}
