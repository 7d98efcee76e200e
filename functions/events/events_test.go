package events_test

import (
	"bytes"
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
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/uptrace/bun"
	noopmetric "go.opentelemetry.io/otel/metric/noop"

	"github.com/example/users/functions/events"
	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// eventLogs returns the decoded "cloudevent" log lines.
func eventLogs(t *testing.T, logs *testenv.Logs) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %s: %v", line, err)
		}
		if m["msg"] == "cloudevent" {
			out = append(out, m)
		}
	}
	return out
}

type modeCase struct {
	name string
	with func(context.Context) context.Context
}

var modes = []modeCase{
	{"binary", binding.WithForceBinary},
	{"structured", binding.WithForceStructured},
}

func newClient(t *testing.T, target string) client.Client {
	t.Helper()
	c, err := client.NewHTTP(cehttp.WithTarget(target))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createEvent(t *testing.T, id, data string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/tests/" + t.Name())
	e.SetType(events.TypeCreate)
	if err := e.SetData("application/json", json.RawMessage(data)); err != nil {
		t.Fatal(err)
	}
	return e
}

// send delivers e and returns the reply (nil for none) and the status.
func send(ctx context.Context, t *testing.T, c client.Client, e event.Event) (*event.Event, int) {
	t.Helper()
	reply, res := c.Request(ctx, e)
	var hr *cehttp.Result
	if !protocol.ResultAs(res, &hr) {
		t.Fatalf("delivery failed without an HTTP status: %v", res)
	}
	return reply, hr.StatusCode
}

// encode is the reply as a receiver compares it: every attribute and the data.
func encode(t *testing.T, e *event.Event) string {
	t.Helper()
	if e == nil {
		return "<no reply>"
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func count(t *testing.T, db *bun.DB, table string) int {
	t.Helper()
	n, err := db.NewSelect().TableExpr(table).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func getUser(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

func TestCreate(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			logs := &testenv.Logs{}
			srv, db, _ := testenv.Service(t, logs)
			c := newClient(t, srv.URL+"/")
			e := createEvent(t, "evt-1", `{"username":"Alice","email":"alice@example.com"}`)

			reply, status := send(m.with(context.Background()), t, c, e)
			if status != http.StatusOK || reply == nil {
				t.Fatalf("status %d, reply %v", status, reply)
			}
			if reply.Type() != events.TypeCreated || reply.Source() != events.Source ||
				reply.ID() == "" || reply.ID() == e.ID() || reply.Time().IsZero() ||
				reply.SpecVersion() != event.CloudEventsVersionV1 || reply.DataContentType() != "application/json" {
				t.Fatalf("reply attributes: %s", reply)
			}
			if err := reply.Validate(); err != nil {
				t.Fatalf("reply is not a valid CloudEvent: %v", err)
			}
			var u user.User
			if err := json.Unmarshal(reply.Data(), &u); err != nil {
				t.Fatalf("reply data %s: %v", reply.Data(), err)
			}
			if u.ID < 1 || u.Username != "Alice" || u.Email != "alice@example.com" || u.CreatedAt.IsZero() {
				t.Fatalf("reply user %+v", u)
			}
			// The reply data is the user exactly as GET /user/{id} shows it.
			if got := getUser(t, fmt.Sprintf("%s/user/%d", srv.URL, u.ID)); !bytes.Equal(got, reply.Data()) {
				t.Fatalf("GET /user/%d = %s, reply data %s", u.ID, got, reply.Data())
			}
			if n := testenv.CountUsers(t, db); n != 1 {
				t.Fatalf("%d users, want 1", n)
			}
			if n := count(t, db, "processed_events"); n != 1 {
				t.Fatalf("%d processed events, want 1", n)
			}

			lines := eventLogs(t, logs)
			if len(lines) != 1 {
				t.Fatalf("%d cloudevent log lines, want 1: %v", len(lines), lines)
			}
			l := lines[0]
			if l["type"] != events.TypeCreate || l["source"] != e.Source() || l["id"] != e.ID() ||
				l["outcome"] != "created" || l["status"] != float64(200) || l["mode"] != m.name {
				t.Fatalf("log line %v", l)
			}
		})
	}
}

// TestReplyMode checks on the wire that the reply comes in the request's
// content mode and is the same event in both.
func TestReplyMode(t *testing.T) {
	srv, _, _ := testenv.Service(t, nil)
	data := `{"username":"bob","email":"bob@example.com"}`

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "wire-1")
	req.Header.Set("Ce-Source", "/tests/wire")
	req.Header.Set("Ce-Type", events.TypeCreate)
	bin := do(t, req)
	if bin.StatusCode != http.StatusOK || bin.Header.Get("Ce-Type") != events.TypeCreated ||
		bin.Header.Get("Ce-Source") != events.Source || bin.Header.Get("Ce-Id") == "" ||
		bin.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("binary reply: %d %v %s", bin.StatusCode, bin.Header, bin.body)
	}

	structured, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "wire-1", "source": "/tests/wire", "type": events.TypeCreate,
		"datacontenttype": "application/json", "data": json.RawMessage(data),
	})
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/", bytes.NewReader(structured))
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	st := do(t, req)
	if st.StatusCode != http.StatusOK || st.Header.Get("Content-Type") != "application/cloudevents+json" {
		t.Fatalf("structured reply: %d %v %s", st.StatusCode, st.Header, st.body)
	}
	var got struct {
		ID, Source, Type, Time string
		Data                   json.RawMessage
	}
	if err := json.Unmarshal(st.body, &got); err != nil {
		t.Fatal(err)
	}
	// The second delivery (other mode, same source and id) is a redelivery.
	if got.ID != bin.Header.Get("Ce-Id") || got.Time != bin.Header.Get("Ce-Time") ||
		got.Type != events.TypeCreated || string(got.Data) != string(bin.body) {
		t.Fatalf("structured reply %s differs from binary reply %v %s", st.body, bin.Header, bin.body)
	}
}

// TestSpecVersion03 accepts the older CloudEvents version sdk-go decodes
// and still answers with a 1.0 event.
func TestSpecVersion03(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(`{"username":"old","email":"old@example.com"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "0.3")
	req.Header.Set("Ce-Id", "v03")
	req.Header.Set("Ce-Source", "/tests/v03")
	req.Header.Set("Ce-Type", events.TypeCreate)
	resp := do(t, req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Ce-Specversion") != "1.0" || resp.Header.Get("Ce-Type") != events.TypeCreated {
		t.Fatalf("reply: %d %v %s", resp.StatusCode, resp.Header, resp.body)
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
}

type response struct {
	*http.Response
	body []byte
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, b}
}

func TestRedeliverySequential(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			logs := &testenv.Logs{}
			srv, db, _ := testenv.Service(t, logs)
			c := newClient(t, srv.URL+"/")
			e := createEvent(t, "once", `{"username":"carol","email":"carol@example.com"}`)
			ctx := m.with(context.Background())

			first, status := send(ctx, t, c, e)
			if status != http.StatusOK {
				t.Fatalf("first delivery: %d", status)
			}
			want := encode(t, first)
			for i := 2; i <= 10; i++ {
				reply, status := send(ctx, t, c, e)
				if status != http.StatusOK || encode(t, reply) != want {
					t.Fatalf("delivery %d: %d %s, want 200 %s", i, status, encode(t, reply), want)
				}
			}
			if n := testenv.CountUsers(t, db); n != 1 {
				t.Fatalf("%d users, want 1", n)
			}
			if n := count(t, db, "processed_events"); n != 1 {
				t.Fatalf("%d processed events, want 1", n)
			}
			outcomes := map[any]int{}
			for _, l := range eventLogs(t, logs) {
				outcomes[l["outcome"]]++
			}
			if outcomes["created"] != 1 || outcomes["duplicate"] != 9 {
				t.Fatalf("logged outcomes %v, want 1 created and 9 duplicate", outcomes)
			}
		})
	}
}

// TestRedeliveryConcurrent delivers one event ten times at once. To one
// service, the deliveries that arrive while the first is in flight share
// a statement (the store's batch). In the "forced" case each goes to a
// service of its own, as redeliveries reach different pods, and the users
// table is locked until all ten are inside PostgreSQL and waiting, so
// every delivery overlaps the first one instead of relying on timing.
func TestRedeliveryConcurrent(t *testing.T) {
	for _, forced := range []bool{false, true} {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/forced=%v", m.name, forced), func(t *testing.T) {
				const n = 10
				db, cfg := testenv.DB(t)
				clients := make([]client.Client, n)
				for i := range clients {
					if i == 0 || forced {
						srv, _ := testenv.Serve(t, cfg, nil)
						clients[i] = newClient(t, srv.URL+"/")
					} else {
						clients[i] = clients[0]
					}
				}
				e := createEvent(t, "concurrent", `{"username":"dave","email":"dave@example.com"}`)
				ctx := m.with(context.Background())

				var tx bun.Tx
				if forced {
					var err error
					if tx, err = db.BeginTx(context.Background(), nil); err != nil {
						t.Fatal(err)
					}
					defer func() { _ = tx.Rollback() }() // a no-op once committed
					if _, err := tx.ExecContext(context.Background(), "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"); err != nil {
						t.Fatal(err)
					}
				}

				replies := make([]string, n)
				statuses := make([]int, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						reply, res := clients[i].Request(ctx, e)
						var hr *cehttp.Result
						if protocol.ResultAs(res, &hr) {
							statuses[i] = hr.StatusCode
						}
						if reply != nil {
							b, _ := json.Marshal(reply)
							replies[i] = string(b)
						}
					})
				}
				if forced {
					// One delivery waits for the users lock, nine for its
					// event key.
					waitForWaiting(t, db, n)
					if err := tx.Commit(); err != nil {
						t.Fatal(err)
					}
				}
				wg.Wait()

				for i := range n {
					if statuses[i] != http.StatusOK || replies[i] == "" || replies[i] != replies[0] {
						t.Fatalf("delivery %d: %d %s; delivery 0: %d %s", i, statuses[i], replies[i], statuses[0], replies[0])
					}
				}
				if got := testenv.CountUsers(t, db); got != 1 {
					t.Fatalf("%d users, want 1", got)
				}
				if got := count(t, db, "processed_events"); got != 1 {
					t.Fatalf("%d processed events, want 1", got)
				}
			})
		}
	}
}

// waitForWaiting waits until n backends of this database wait on a lock.
func waitForWaiting(t *testing.T, db *bun.DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		err := db.QueryRowContext(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries are waiting in PostgreSQL", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawCase is a request built by hand: what sdk-go's client cannot send.
type rawCase struct {
	name        string
	headers     map[string]string
	body        string
	status      int
	detail      string // a substring of the problem's detail
	errorsField string // the field named in the problem's errors, if any
}

func binaryHeaders(id, typ, contentType string) map[string]string {
	h := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": id, "Ce-Source": "/tests/raw", "Ce-Type": typ}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	return h
}

func TestRejected(t *testing.T) {
	logs := &testenv.Logs{}
	srv, db, _ := testenv.Service(t, logs)
	c := newClient(t, srv.URL+"/")

	// An existing user, created by an event, for the conflict cases.
	seed := createEvent(t, "seed", `{"username":"Erin","email":"erin@example.com"}`)
	if _, status := send(context.Background(), t, c, seed); status != http.StatusOK {
		t.Fatalf("seed: %d", status)
	}

	valid := `{"username":"frank","email":"frank@example.com"}`
	structured := func(fields string) string {
		return `{"specversion":"1.0","id":"s-1","source":"/tests/raw",` + fields + `}`
	}
	bigID := strings.Repeat("x", events.MaxKeyLen+1)
	raw := []rawCase{
		{name: "plain JSON, no CloudEvent", headers: map[string]string{"Content-Type": "application/json"},
			body: valid, status: http.StatusUnsupportedMediaType, detail: "not a CloudEvent"},
		{name: "no body, no headers", status: http.StatusUnsupportedMediaType, detail: "not a CloudEvent"},
		{name: "unknown specversion", headers: map[string]string{"Ce-Specversion": "2.0", "Ce-Id": "x", "Ce-Source": "/x", "Ce-Type": events.TypeCreate, "Content-Type": "application/json"},
			body: valid, status: http.StatusUnsupportedMediaType, detail: "not a CloudEvent"},
		{name: "batch", headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			body: "[" + structured(`"type":"`+events.TypeCreate+`","data":`+valid) + "]", status: http.StatusUnsupportedMediaType, detail: "batch"},
		{name: "structured, broken JSON", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: `{"specversion":"1.0",`, status: http.StatusBadRequest, detail: "not a valid CloudEvent"},
		{name: "binary, no id", headers: map[string]string{"Ce-Specversion": "1.0", "Ce-Source": "/x", "Ce-Type": events.TypeCreate, "Content-Type": "application/json"},
			body: valid, status: http.StatusBadRequest, detail: "id"},
		{name: "structured, no type", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body: structured(`"data":` + valid), status: http.StatusBadRequest, detail: "type"},
		{name: "unknown type", headers: binaryHeaders("t-1", "com.example.user.delete", "application/json"),
			body: valid, status: http.StatusBadRequest, detail: `unsupported event type "com.example.user.delete"`},
		{name: "reply type sent back", headers: binaryHeaders("t-2", events.TypeCreated, "application/json"),
			body: valid, status: http.StatusBadRequest, detail: "unsupported event type"},
		{name: "data not JSON", headers: binaryHeaders("t-3", events.TypeCreate, "text/plain"),
			body: valid, status: http.StatusBadRequest, detail: `datacontenttype "text/plain"`},
		{name: "curl's default form type", headers: binaryHeaders("t-4", events.TypeCreate, "application/x-www-form-urlencoded"),
			body: valid, status: http.StatusBadRequest, detail: "datacontenttype"},
		{name: "no data", headers: binaryHeaders("t-5", events.TypeCreate, "application/json"),
			status: http.StatusBadRequest, detail: "empty", errorsField: "body"},
		{name: "invalid username", headers: binaryHeaders("t-6", events.TypeCreate, "application/json"),
			body: `{"username":"no spaces","email":"g@example.com"}`, status: http.StatusBadRequest, errorsField: "username"},
		{name: "invalid email", headers: binaryHeaders("t-7", events.TypeCreate, ""),
			body: `{"username":"gina","email":"not-an-address"}`, status: http.StatusBadRequest, errorsField: "email"},
		{name: "unknown field", headers: binaryHeaders("t-8", events.TypeCreate, "application/json"),
			body: `{"username":"gina","email":"g@example.com","admin":true}`, status: http.StatusBadRequest, errorsField: "admin"},
		{name: "structured, data a string", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body:   structured(`"type":"` + events.TypeCreate + `","datacontenttype":"application/json","data":"` + strings.ReplaceAll(valid, `"`, `\"`) + `"`),
			status: http.StatusBadRequest, errorsField: "body"},
		{name: "id too long", headers: binaryHeaders(bigID, events.TypeCreate, "application/json"),
			body: valid, status: http.StatusBadRequest, detail: "id must be at most"},
		{name: "structured, NUL in id", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body:   `{"specversion":"1.0","id":"n\u00001","source":"/tests/raw","type":"` + events.TypeCreate + `","data":` + valid + `}`,
			status: http.StatusBadRequest, detail: "NUL"},
		{name: "binary, id not UTF-8", headers: binaryHeaders("n\xff2", events.TypeCreate, "application/json"),
			body: valid, status: http.StatusBadRequest, detail: "UTF-8"},
		{name: "structured, NUL in source", headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			body:   `{"specversion":"1.0","id":"n-3","source":"/a\u0000b","type":"` + events.TypeCreate + `","data":` + valid + `}`,
			status: http.StatusBadRequest, detail: "not a valid CloudEvent"},
		{name: "too large", headers: binaryHeaders("t-9", events.TypeCreate, "application/json"),
			body:   `{"username":"h","email":"` + strings.Repeat("h", events.MaxBody) + `@example.com"}`,
			status: http.StatusRequestEntityTooLarge},
		{name: "username taken by another event", headers: binaryHeaders("t-10", events.TypeCreate, "application/json"),
			body: `{"username":"ERIN","email":"other@example.com"}`, status: http.StatusUnprocessableEntity, errorsField: "username"},
		{name: "email taken by another event", headers: binaryHeaders("t-11", events.TypeCreate, "application/json"),
			body: `{"username":"other","email":"Erin@Example.com"}`, status: http.StatusUnprocessableEntity, errorsField: "email"},
		// A rejected event is not recorded, so its redelivery is judged again.
		{name: "username taken, redelivered", headers: binaryHeaders("t-10", events.TypeCreate, "application/json"),
			body: `{"username":"ERIN","email":"other@example.com"}`, status: http.StatusUnprocessableEntity, errorsField: "username"},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			users, processed := testenv.CountUsers(t, db), count(t, db, "processed_events")
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			p := testenv.ReadProblem(t, resp, tc.status)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", p.Detail, tc.detail)
			}
			if tc.errorsField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.errorsField) {
				t.Errorf("errors %+v do not name %q", p.Errors, tc.errorsField)
			}
			if resp.Header.Get("Ce-Id") != "" {
				t.Errorf("a rejection carries a reply event: %v", resp.Header)
			}
			if u, pe := testenv.CountUsers(t, db), count(t, db, "processed_events"); u != users || pe != processed {
				t.Fatalf("rows changed: users %d -> %d, processed events %d -> %d", users, u, processed, pe)
			}
		})
	}

	// The same through sdk-go's client, in both modes.
	for _, m := range modes {
		t.Run("client/"+m.name, func(t *testing.T) {
			users, processed := testenv.CountUsers(t, db), count(t, db, "processed_events")
			ctx := m.with(context.Background())
			cases := []struct {
				e      event.Event
				status int
			}{
				{createEvent(t, "c-1", `{"username":"bad name","email":"x@example.com"}`), http.StatusBadRequest},
				{createEvent(t, "c-2", `{"username":"erin","email":"new@example.com"}`), http.StatusUnprocessableEntity},
				{func() event.Event {
					e := createEvent(t, "c-3", valid)
					e.SetType("com.example.other")
					return e
				}(), http.StatusBadRequest},
			}
			for _, tc := range cases {
				reply, status := send(ctx, t, c, tc.e)
				if status != tc.status || reply != nil {
					t.Errorf("event %s: %d %v, want %d and no reply", tc.e.ID(), status, reply, tc.status)
				}
			}
			if u, pe := testenv.CountUsers(t, db), count(t, db, "processed_events"); u != users || pe != processed {
				t.Fatalf("rows changed: users %d -> %d, processed events %d -> %d", users, u, processed, pe)
			}
		})
	}

	// Every rejection is logged with its outcome and, where the event could
	// be read, its type, source and id.
	var sawConflict bool
	for _, l := range eventLogs(t, logs) {
		if l["outcome"] == "rejected" && l["status"] == float64(422) {
			sawConflict = l["type"] == events.TypeCreate && l["source"] != nil && l["id"] != nil
		}
	}
	if !sawConflict {
		t.Fatalf("no log line for a 422 with the event's type, source and id: %v", eventLogs(t, logs))
	}
}

// TestRejectedThenFixed: an event rejected for its data leaves no trace, so
// the same id with valid data creates the user.
func TestRejectedThenFixed(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	c := newClient(t, srv.URL+"/")
	bad := createEvent(t, "fixable", `{"username":"","email":"ivy@example.com"}`)
	if _, status := send(context.Background(), t, c, bad); status != http.StatusBadRequest {
		t.Fatalf("bad data: %d", status)
	}
	good := createEvent(t, "fixable", `{"username":"ivy","email":"ivy@example.com"}`)
	if reply, status := send(context.Background(), t, c, good); status != http.StatusOK || reply == nil {
		t.Fatalf("good data: %d", status)
	}
	if n := testenv.CountUsers(t, db); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			logs := &testenv.Logs{}
			cfg := testenv.Unreachable(t)
			db := store.Open(cfg.Options(), "events-test")
			defer db.Close()
			h, err := events.New(store.New(db, cfg.QueryTimeout), slog.New(slog.NewJSONHandler(logs, nil)),
				nil, noopmetric.NewMeterProvider())
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()

			e := createEvent(t, "down", `{"username":"jack","email":"jack@example.com"}`)
			reply, status := send(m.with(context.Background()), t, newClient(t, srv.URL), e)
			if status != http.StatusServiceUnavailable || reply != nil {
				t.Fatalf("status %d, reply %v; want 503", status, reply)
			}

			// On the wire: a problem, and a hint to retry.
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"username":"jack","email":"jack@example.com"}`))
			for k, v := range binaryHeaders("down", events.TypeCreate, "application/json") {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			testenv.ReadProblem(t, resp, http.StatusServiceUnavailable)

			lines := eventLogs(t, logs)
			if len(lines) != 2 || lines[0]["outcome"] != "failed" || lines[0]["error"] == nil || lines[0]["id"] != "down" {
				t.Fatalf("log lines %v", lines)
			}
		})
	}
}

// TestWithUserAPI: events and POST /user create the same users, and
// GET /user lists both.
func TestWithUserAPI(t *testing.T) {
	srv, db, _ := testenv.Service(t, nil)
	c := newClient(t, srv.URL+"/")

	reply, status := send(context.Background(), t, c, createEvent(t, "api-1", `{"username":"kate","email":"kate@example.com"}`))
	if status != http.StatusOK {
		t.Fatalf("event: %d", status)
	}
	var fromEvent user.User
	if err := json.Unmarshal(reply.Data(), &fromEvent); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Post(srv.URL+"/user", "application/json", strings.NewReader(`{"username":"Liam","email":"liam@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /user: %d", resp.StatusCode)
	}

	var listed []user.User
	if err := json.Unmarshal(getUser(t, srv.URL+"/user"), &listed); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range listed {
		if u.ID == fromEvent.ID && u.Username == "kate" && u.CreatedAt.Equal(fromEvent.CreatedAt) {
			found = true
		}
	}
	if !found || len(listed) != 2 {
		t.Fatalf("GET /user = %+v; want kate (id %d) among 2 users", listed, fromEvent.ID)
	}

	// A name taken through POST /user is a final 422 for an event.
	users := testenv.CountUsers(t, db)
	reply, status = send(context.Background(), t, c, createEvent(t, "api-2", `{"username":"liam","email":"other@example.com"}`))
	if status != http.StatusUnprocessableEntity || reply != nil {
		t.Fatalf("event for a taken name: %d %v, want 422", status, reply)
	}
	if n := testenv.CountUsers(t, db); n != users {
		t.Fatalf("users %d -> %d", users, n)
	}
	if n := count(t, db, "processed_events"); n != 1 {
		t.Fatalf("%d processed events, want 1", n)
	}
}

// TestRoute: the handler is mounted at POST / and nowhere else.
func TestRoute(t *testing.T) {
	srv, _, fn := testenv.Service(t, nil)
	if got := fn.Routes()["/{$}"]; len(got) != 1 || got[0] != http.MethodPost {
		t.Fatalf("routes for /: %v", got)
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	testenv.ReadProblem(t, resp, http.StatusMethodNotAllowed)
}
