package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// queryHook records, per waiter, the statements it was reported.
type queryHook struct {
	mu   sync.Mutex
	seen map[int][]string
}

func (h *queryHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (h *queryHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	if i, ok := ctx.Value(waiterKey{}).(int); ok {
		h.mu.Lock()
		h.seen[i] = append(h.seen[i], ev.Query)
		h.mu.Unlock()
	}
}

func (h *queryHook) of(i int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen[i]...)
}

// blockInserts holds a lock on users that INSERT waits for, until the
// returned function is called.
func blockInserts(t *testing.T, db *bun.DB) (release func()) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("LOCK TABLE users IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// waitForInsertOnLock waits until one INSERT INTO users waits on a lock.
func waitForInsertOnLock(t *testing.T, db *bun.DB) {
	t.Helper()
	waitFor(t, "an insert waits on the lock", func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO users%'`).Scan(&n)
		return err == nil && n == 1
	})
}

type outcome struct {
	u   user.User
	err error
}

// queueBehind starts calls[0], which waits on blockInserts' lock, then
// the rest, which queue behind it (queued counts them), one at a time so
// the queue's order is theirs, and returns once they are all queued; call
// the returned function to let them run and wait for them. Each call gets
// a context whose waiterKey is its index.
func queueBehind(t *testing.T, db *bun.DB, queued func() int, calls []func(context.Context)) (run func()) {
	t.Helper()
	release := blockInserts(t, db)
	var wg sync.WaitGroup
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i](context.WithValue(context.Background(), waiterKey{}, i))
		}()
	}
	start(0)
	waitForInsertOnLock(t, db)
	for i := 1; i < len(calls); i++ {
		start(i)
		waitFor(t, fmt.Sprintf("call %d is queued", i), func() bool { return queued() == i })
	}
	return func() {
		release()
		wg.Wait()
	}
}

// batchOf is queueBehind for Creates of first, then news, with each one's
// outcome (index 0 is first's).
func batchOf(t *testing.T, db *bun.DB, s *store.Store, first user.New, news []user.New) func() []outcome {
	t.Helper()
	all := append([]user.New{first}, news...)
	out := make([]outcome, len(all))
	calls := make([]func(context.Context), len(all))
	for i, n := range all {
		calls[i] = func(ctx context.Context) {
			u, err := s.Create(ctx, n)
			out[i] = outcome{u, err}
		}
	}
	run := queueBehind(t, db, func() int { return store.QueuedCreates(s) }, calls)
	return func() []outcome {
		run()
		return out
	}
}

func isBatch(q string) bool { return strings.Contains(q, "unnest") }

// TestCreatesShareAStatement: creates that arrive while one is in flight
// go as one statement when it ends, each gets its own user back, and the
// table holds exactly those users. The names are what a text[] literal
// would get wrong if quoted badly. A create whose context ends while it
// is queued leaves, and its user is not created.
func TestCreatesShareAStatement(t *testing.T) {
	db, cfg := testenv.DB(t)
	hook := &queryHook{seen: map[int][]string{}}
	s := store.New(db, cfg.QueryTimeout).WithQueryHook(hook)
	names := []string{"NULL", "a,b", "{x}", `"q"`, `back\slash`, `\"`, `""`, " spaced ", "ünï", "'single'", "x}", "{"}
	var news []user.New
	for i, name := range names {
		news = append(news, user.New{Username: name, Email: fmt.Sprintf(`"%s"@%d.example`, name, i)})
	}
	run := batchOf(t, db, s, user.New{Username: "first", Email: "first@example.com"}, news)

	// One more, queued last, gives up before the batch runs.
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := s.Create(ctx, user.New{Username: "gave-up", Email: "gave-up@example.com"})
		gaveUp <- err
	}()
	waitFor(t, "the last create is queued", func() bool { return store.QueuedCreates(s) == len(news)+1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, user.ErrUnavailable) {
		t.Fatalf("a queued create whose context ended: %v, want ErrUnavailable", err)
	}
	if n := store.QueuedCreates(s); n != len(news) {
		t.Fatalf("%d creates queued after one left, want %d", n, len(news))
	}

	out := run()
	want := append([]user.New{{Username: "first", Email: "first@example.com"}}, news...)
	byID := map[int64]user.User{}
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("create %d (%q): %v", i, want[i].Username, o.err)
		}
		if o.u.Username != want[i].Username || o.u.Email != want[i].Email || o.u.ID == 0 ||
			o.u.CreatedAt.IsZero() || o.u.CreatedAt.Location() != time.UTC {
			t.Errorf("create %d got %+v, want %q <%s> with an id and a UTC time", i, o.u, want[i].Username, want[i].Email)
		}
		byID[o.u.ID] = o.u
	}
	if len(byID) != len(out) {
		t.Fatalf("%d distinct ids for %d creates", len(byID), len(out))
	}
	rows, err := db.Query("SELECT id, username, email, created_at FROM users")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := 0
	for rows.Next() {
		var u user.User
		if err := rows.Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt); err != nil {
			t.Fatal(err)
		}
		got, ok := byID[u.ID]
		if !ok || got.Username != u.Username || got.Email != u.Email || !got.CreatedAt.Equal(u.CreatedAt) {
			t.Errorf("stored %+v, which no create returned as such (%+v)", u, got)
		}
		stored++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if stored != len(out) {
		t.Errorf("%d users stored, want %d (the one that gave up must not be)", stored, len(out))
	}

	if q := hook.of(0); len(q) != 1 || isBatch(q[0]) {
		t.Errorf("the first create ran %q, want the single-row INSERT alone", q)
	}
	for i := 1; i < len(out); i++ {
		if q := hook.of(i); len(q) != 1 || !isBatch(q[0]) {
			t.Errorf("queued create %d ran %q, want only the batch's statement", i, q)
		}
	}
}

// TestCreatesInABatchGetTheirOwnAnswer: when one member's row is refused
// (a name taken before, or by another member in any letter case), each
// member gets the answer it would have had alone, in the order they came,
// and nothing else is stored.
func TestCreatesInABatchGetTheirOwnAnswer(t *testing.T) {
	db, cfg := testenv.DB(t)
	hook := &queryHook{seen: map[int][]string{}}
	s := store.New(db, cfg.QueryTimeout).WithQueryHook(hook)
	if _, err := s.Create(context.Background(), user.New{Username: "taken", Email: "taken@example.com"}); err != nil {
		t.Fatal(err)
	}
	news := []user.New{
		{Username: "ok1", Email: "ok1@example.com"},
		{Username: "TAKEN", Email: "other@example.com"},
		{Username: "bob", Email: "bob@example.com"},
		{Username: "BOB", Email: "bob2@example.com"},
		{Username: "carol", Email: "Taken@Example.com"},
		{Username: "ok2", Email: "ok2@example.com"},
	}
	wantTaken := map[int]string{2: "username", 4: "username", 5: "email"}
	out := batchOf(t, db, s, user.New{Username: "first", Email: "first@example.com"}, news)()
	for i, o := range out {
		var taken *user.TakenError
		switch field, ok := wantTaken[i]; {
		case ok:
			if !errors.As(o.err, &taken) || taken.Field != field {
				t.Errorf("create %d: %+v, %v; want the %s taken", i, o.u, o.err, field)
			}
		case o.err != nil:
			t.Errorf("create %d: %v", i, o.err)
		}
	}
	var names []string
	if err := db.NewSelect().Table("users").Column("username").Order("id").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names, " "), "taken first ok1 bob ok2"; got != want {
		t.Errorf("stored %q, want %q", got, want)
	}
	for i := 1; i < len(out); i++ {
		if q := hook.of(i); len(q) != 2 || !isBatch(q[0]) || isBatch(q[1]) {
			t.Errorf("create %d ran %q, want the batch's statement, then its own", i, q)
		}
	}
}

// TestArrayLiteral: PostgreSQL reads arrayLiteral's output back as the
// strings it was given.
func TestArrayLiteral(t *testing.T) {
	db, _ := testenv.DB(t)
	for _, ss := range [][]string{
		{""},
		{"NULL", "null", " ", "a,b", "{", "}", `"`, `\`, `\\"`, "'", "ünï", "tab\there", "new\nline"},
	} {
		var got []string
		rows, err := db.DB.Query("SELECT * FROM unnest($1::text[])", store.ArrayLiteral(ss))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s sql.NullString
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			if !s.Valid {
				t.Fatalf("%q: a NULL came back", ss)
			}
			got = append(got, s.String)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", ss) {
			t.Errorf("got %q, want %q", got, ss)
		}
	}
}

type eventOutcome struct {
	rep store.EventReply
	err error
}

// eventsBehind is queueBehind for CreateForEvents.
func eventsBehind(t *testing.T, db *bun.DB, s *store.Store, keys []store.EventKey, news []user.New) func() []eventOutcome {
	t.Helper()
	out := make([]eventOutcome, len(keys))
	calls := make([]func(context.Context), len(keys))
	for i := range keys {
		calls[i] = func(ctx context.Context) {
			rep, err := s.CreateForEvent(ctx, keys[i], news[i])
			out[i] = eventOutcome{rep, err}
		}
	}
	run := queueBehind(t, db, func() int { return store.QueuedEvents(s) }, calls)
	return func() []eventOutcome {
		run()
		return out
	}
}

// TestEventsShareAStatement: CloudEvent creates queued behind one in
// flight go as one statement, each gets the reply of its own event, and
// the tables hold exactly one user and one record per event.
func TestEventsShareAStatement(t *testing.T) {
	db, cfg := testenv.DB(t)
	hook := &queryHook{seen: map[int][]string{}}
	s := store.New(db, cfg.QueryTimeout).WithQueryHook(hook)
	var keys []store.EventKey
	var news []user.New
	for i, id := range []string{"e-0", "NULL", `"q"`, `back\slash`, "a,b", "{x}"} {
		keys = append(keys, store.EventKey{Source: fmt.Sprintf("/src/%d", i%2), ID: id})
		news = append(news, user.New{Username: fmt.Sprintf("u%d", i), Email: fmt.Sprintf("u%d@example.com", i)})
	}
	out := eventsBehind(t, db, s, keys, news)()
	for i, o := range out {
		if o.err != nil || o.rep.Duplicate || o.rep.UserID == 0 || o.rep.ID == "" || o.rep.Time.IsZero() {
			t.Fatalf("event %d: %+v, %v", i, o.rep, o.err)
		}
		var stored struct {
			userID  int64
			replyID string
			at      time.Time
			name    string
			created time.Time
		}
		err := db.DB.QueryRow(`SELECT e.user_id, e.reply_id, e.processed_at, u.username, u.created_at
			FROM processed_events e JOIN users u ON u.id = e.user_id WHERE e.source = $1 AND e.id = $2`, keys[i].Source, keys[i].ID).
			Scan(&stored.userID, &stored.replyID, &stored.at, &stored.name, &stored.created)
		if err != nil {
			t.Fatalf("event %d's record: %v", i, err)
		}
		if stored.userID != o.rep.UserID || stored.replyID != o.rep.ID || !stored.at.Equal(o.rep.Time) || stored.name != news[i].Username {
			t.Errorf("event %d answered %+v, but its record is %+v", i, o.rep, stored)
		}
		data, _ := json.Marshal(user.User{ID: stored.userID, Username: news[i].Username, Email: news[i].Email, CreatedAt: stored.created.UTC()})
		if string(o.rep.Data) != string(data) {
			t.Errorf("event %d's data %s, want %s", i, o.rep.Data, data)
		}
		if q := hook.of(i); len(q) != 1 || isBatch(q[0]) != (i > 0) {
			t.Errorf("event %d ran %q, want the single statement for the first and the batch's for the rest", i, q)
		}
	}
	var users, events int
	if err := db.DB.QueryRow("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM processed_events)").Scan(&users, &events); err != nil {
		t.Fatal(err)
	}
	if users != len(keys) || events != len(keys) {
		t.Errorf("%d users and %d records, want %d of each", users, events, len(keys))
	}
}

// TestEventsInABatchGetTheirOwnAnswer: redeliveries (of an event
// processed before, and of one twice in the same batch) and a taken name
// in a batch each get the answer they would have had alone.
func TestEventsInABatchGetTheirOwnAnswer(t *testing.T) {
	db, cfg := testenv.DB(t)
	s := store.New(db, cfg.QueryTimeout)
	k1 := store.EventKey{Source: "/test", ID: "k1"}
	eve := user.New{Username: "eve", Email: "eve@example.com"}
	before, err := s.CreateForEvent(context.Background(), k1, eve)
	if err != nil {
		t.Fatal(err)
	}
	k3 := store.EventKey{Source: "/test", ID: "k3"}
	dan := user.New{Username: "dan", Email: "dan@example.com"}
	keys := []store.EventKey{{Source: "/test", ID: "first"}, k1, k1, {Source: "/test", ID: "k2"}, k3, k3, {Source: "/test", ID: "k4"}}
	news := []user.New{{Username: "first", Email: "first@example.com"}, eve, {Username: "mallory", Email: "mallory@example.com"},
		{Username: "EVE", Email: "eve2@example.com"}, dan, dan, {Username: "fay", Email: "fay@example.com"}}
	out := eventsBehind(t, db, s, keys, news)()
	same := func(a, b store.EventReply) bool {
		return a.ID == b.ID && a.UserID == b.UserID && a.Time.Equal(b.Time) && string(a.Data) == string(b.Data)
	}
	for i, o := range out {
		var taken *user.TakenError
		switch i {
		case 1, 2: // redeliveries of k1, the second with another user
			if o.err != nil || !o.rep.Duplicate || !same(o.rep, before) {
				t.Errorf("event %d: %+v, %v; want the first reply %+v", i, o.rep, o.err, before)
			}
		case 3:
			if !errors.As(o.err, &taken) || taken.Field != "username" {
				t.Errorf("event %d: %+v, %v; want the username taken", i, o.rep, o.err)
			}
		case 5: // k3 again, behind its first delivery in the same batch
			if o.err != nil || !o.rep.Duplicate || !same(o.rep, out[4].rep) {
				t.Errorf("event %d: %+v, %v; want event 4's reply %+v", i, o.rep, o.err, out[4].rep)
			}
		default:
			if o.err != nil || o.rep.Duplicate {
				t.Errorf("event %d: %+v, %v; want it created", i, o.rep, o.err)
			}
		}
	}
	var names, events []string
	if err := db.NewSelect().Table("users").Column("username").Order("id").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	if err := db.NewSelect().Table("processed_events").Column("id").Order("processed_at", "id").Scan(context.Background(), &events); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names, " "), "eve first dan fay"; got != want {
		t.Errorf("users %q, want %q", got, want)
	}
	if got, want := strings.Join(events, " "), "k1 first k3 k4"; got != want {
		t.Errorf("records %q, want %q", got, want)
	}
}

// TestQueuedCreatesKeepTheirDeadline: a create queued behind one that
// never answers gets its 503 when the store's timeout from its arrival
// ends, not a timeout after the one in flight gave up.
func TestQueuedCreatesKeepTheirDeadline(t *testing.T) {
	db, _ := testenv.DB(t)
	const timeout = time.Second
	s := store.New(db, timeout)
	blockInserts(t, db)
	first := make(chan error, 1)
	go func() {
		_, err := s.Create(context.Background(), user.New{Username: "first", Email: "first@example.com"})
		first <- err
	}()
	waitForInsertOnLock(t, db)
	arrived := time.Now()
	_, err := s.Create(context.Background(), user.New{Username: "second", Email: "second@example.com"})
	took := time.Since(arrived)
	if !errors.Is(err, user.ErrUnavailable) {
		t.Fatalf("the queued create: %v, want ErrUnavailable", err)
	}
	if took > timeout+timeout/2 {
		t.Fatalf("the queued create took %v to fail, want about the store's timeout (%v)", took, timeout)
	}
	if err := <-first; !errors.Is(err, user.ErrUnavailable) {
		t.Fatalf("the create in flight: %v, want ErrUnavailable", err)
	}
	t.Logf("the queued create failed after %v (timeout %v)", took.Round(time.Millisecond), timeout)
}

// ended is a context that has ended but never says so on Done: the store
// learns it only from Err, as a batch does just before it runs. It stands
// for a caller whose time ran out after the batch took it and before its
// own wake-up, which only a loaded machine's timing gives otherwise.
type ended struct{ context.Context }

func (ended) Done() <-chan struct{} { return nil }
func (ended) Err() error            { return context.Canceled }

// takeName inserts name in a transaction left open, so that an INSERT of
// the same name waits for it; the returned function rolls it back.
func takeName(t *testing.T, db *bun.DB, name string) (release func()) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO users (username, email) VALUES (?, ?)", name, name+"@example.com"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// TestEndedMemberDoesNotWaitForTheBatch: a queued create that has ended
// by the time its batch runs, at the batch's head, returns its error at
// once and the next member runs the batch; it does not wait while that
// member's statement waits (here on another transaction's row for the
// same name), and the member's create succeeds.
func TestEndedMemberDoesNotWaitForTheBatch(t *testing.T) {
	db, _ := testenv.DB(t)
	s := store.New(db, 30*time.Second)
	releaseFirst := takeName(t, db, "first")
	first := make(chan error, 1)
	go func() {
		_, err := s.Create(context.Background(), user.New{Username: "first", Email: "first-2@example.com"})
		first <- err
	}()
	waitForInsertOnLock(t, db)

	gone := make(chan error, 1)
	go func() {
		_, err := s.Create(ended{context.Background()}, user.New{Username: "gone", Email: "gone@example.com"})
		gone <- err
	}()
	waitFor(t, "the ended create is queued", func() bool { return store.QueuedCreates(s) == 1 })
	next := make(chan error, 1)
	go func() {
		_, err := s.Create(context.Background(), user.New{Username: "next", Email: "next@example.com"})
		next <- err
	}()
	waitFor(t, "the next create is queued", func() bool { return store.QueuedCreates(s) == 2 })

	releaseNext := takeName(t, db, "next")
	releaseFirst()
	if err := <-first; err != nil {
		t.Fatalf("the first create: %v", err)
	}
	select {
	case err := <-gone:
		if !errors.Is(err, user.ErrUnavailable) {
			t.Fatalf("the ended create: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the ended create is still waiting, for the batch it was at the head of")
	}
	select {
	case err := <-next:
		t.Fatalf("the next create ended (%v) while its name was held", err)
	default:
	}
	releaseNext()
	if err := <-next; err != nil {
		t.Fatalf("the next create: %v", err)
	}
	var names []string
	if err := db.NewSelect().Table("users").Column("username").Order("id").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names, " "), "first next"; got != want {
		t.Errorf("stored %q, want %q", got, want)
	}
}
