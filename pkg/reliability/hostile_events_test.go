package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/testenv"
)

// hostileEvent is one malformed CloudEvents delivery to POST / and the
// exact answer it must get.
type hostileEvent struct {
	name   string
	method string // POST when empty
	// Binary mode: ce holds the Ce-* attributes (name without prefix to
	// value; a "-" value drops a default), contentType the data's type.
	// Structured mode: contentType application/cloudevents+json and no ce.
	ce          map[string]string
	contentType string // "-" sends none
	body        []byte
	chunked     bool
	want        int
	wantField   string // the first field error's field, when it matters
}

// binaryEvent returns the default binary-mode attributes with overrides.
func binaryEvent(over map[string]string) map[string]string {
	ce := map[string]string{
		"Specversion": "1.0",
		"Type":        "com.example.user.create",
		"Source":      "/reliability/hostile",
	}
	for k, v := range over {
		ce[k] = v
	}
	return ce
}

// structured returns a structured-mode event with the default attributes,
// fields overridden (a nil value removes the field).
func structured(over map[string]any) []byte {
	ev := map[string]any{
		"specversion":     "1.0",
		"type":            "com.example.user.create",
		"source":          "/reliability/hostile",
		"id":              "structured",
		"datacontenttype": "application/json",
		"data":            map[string]string{"username": "carol", "email": "carol@example.com"},
	}
	for k, v := range over {
		if v == nil {
			delete(ev, k)
			continue
		}
		ev[k] = v
	}
	b, _ := json.Marshal(ev)
	return b
}

const ceJSON = "application/cloudevents+json"

func hostileEventCases() []hostileEvent {
	b := binaryEvent
	long := strings.Repeat("s", 1025)
	over := bytes.Repeat([]byte(" "), 64<<10+1)
	carol := userJSON("carol", "carol@example.com")
	var cs []hostileEvent
	add := func(c hostileEvent) { cs = append(cs, c) }

	// Binary mode: bad data (validated exactly as POST /user's body).
	for _, d := range []struct {
		name  string
		body  []byte
		field string
	}{
		{"empty data", js(""), "body"},
		{"broken JSON data", js("{"), "body"},
		{"truncated data", carol[:len(carol)-2], "body"},
		{"null data", js("null"), "body"},
		{"array data", js(`[{"username":"carol","email":"carol@example.com"}]`), "body"},
		{"two objects", append(append([]byte{}, carol...), carol...), "body"},
		{"username number", js(`{"username":1,"email":"carol@example.com"}`), "username"},
		{"email null", js(`{"username":"carol","email":null}`), "email"},
		{"username object", js(`{"username":{"a":1},"email":"carol@example.com"}`), "username"},
		{"extra field", js(`{"username":"carol","email":"carol@example.com","admin":true}`), "admin"},
		{"missing email", js(`{"username":"carol"}`), "email"},
		{"username 65 characters", userJSON(strings.Repeat("a", 65), "carol@example.com"), "username"},
		{"invalid UTF-8", js("{\"username\":\"car\xffol\",\"email\":\"carol@example.com\"}"), "body"},
		{"escaped NUL", js(`{"username":"carol\u0000","email":"carol@example.com"}`), "username"},
		{"raw NUL", js("{\"username\":\"car\x00ol\",\"email\":\"carol@example.com\"}"), "body"},
		{"SQL injection", userJSON("carol'; DROP TABLE processed_events;--", "carol@example.com"), "username"},
		{"HTML injection", userJSON("<script>alert(1)</script>", "carol@example.com"), "username"},
		{"cyrillic confusable", userJSON("\u0430lice", "carol@example.com"), "username"},
		{"email with CRLF", userJSON("carol", "carol@example.com\r\nBcc: x@example.com"), "email"},
		{"byte order mark", append(js("\xef\xbb\xbf"), carol...), "body"},
	} {
		add(hostileEvent{name: "binary " + d.name, ce: b(nil), contentType: "application/json", body: d.body, want: 400, wantField: d.field})
	}

	// Binary mode: taken names, in any case, are final (422, not 409).
	add(hostileEvent{name: "binary ALICE", ce: b(nil), contentType: "application/json", body: userJSON("ALICE", "carol@example.com"), want: 422, wantField: "username"})
	add(hostileEvent{name: "binary Bob@Example.com", ce: b(nil), contentType: "application/json", body: userJSON("carol", "Bob@Example.com"), want: 422, wantField: "email"})
	add(hostileEvent{name: "binary exact duplicate of alice", ce: b(nil), contentType: "application/json", body: userJSON("alice", "alice@example.com"), want: 422})

	// Binary mode: bad attributes.
	for _, a := range []struct {
		name string
		ce   map[string]string
		want int
	}{
		{"missing id", b(map[string]string{"Id": "-"}), 400},
		{"missing source", b(map[string]string{"Source": "-"}), 400},
		{"missing type", b(map[string]string{"Type": "-"}), 400},
		{"empty type", b(map[string]string{"Type": " "}), 400},
		{"other type", b(map[string]string{"Type": "com.example.user.delete"}), 400},
		{"reply type", b(map[string]string{"Type": "com.example.user.created"}), 400},
		{"type in other case", b(map[string]string{"Type": "COM.EXAMPLE.USER.CREATE"}), 400},
		{"source over 1024 bytes", b(map[string]string{"Source": long}), 400},
		{"id over 1024 bytes", b(map[string]string{"Id": long}), 400},
		{"id not UTF-8", b(map[string]string{"Id": "id-\xff"}), 400},
		// (A source with a byte that is not UTF-8, or with a space, is not
		// in the table: sdk-go parses source as a URI reference and
		// percent-encodes such bytes, so "/s-\xfe" arrives as the valid
		// "/s-%FE" and is accepted.)
		{"source empty", b(map[string]string{"Source": " "}), 400},
		{"source bad percent escape", b(map[string]string{"Source": "/a%zz"}), 400},
		{"time not a timestamp", b(map[string]string{"Time": "yesterday"}), 400},
		{"dataschema not a URI", b(map[string]string{"Dataschema": "::%zz"}), 400},
		{"specversion 2.0", b(map[string]string{"Specversion": "2.0"}), 415},
		{"specversion empty", b(map[string]string{"Specversion": " "}), 415},
		{"no specversion", b(map[string]string{"Specversion": "-"}), 415},
	} {
		ce := a.ce
		if _, ok := ce["Id"]; !ok {
			ce["Id"] = "attr-" + a.name
		}
		add(hostileEvent{name: "binary " + a.name, ce: ce, contentType: "application/json", body: carol, want: a.want})
	}

	// Binary mode: data content types.
	for _, ct := range []struct {
		name, ct string
		want     int
	}{
		{"text/plain data", "text/plain", 400},
		{"form data", "application/x-www-form-urlencoded", 400},
		{"latin1 JSON data", "application/json; charset=iso-8859-1", 400},
		{"XML data", "application/xml", 400},
		{"malformed media type", "application/json garbage", 400},
	} {
		add(hostileEvent{name: "binary " + ct.name, ce: b(map[string]string{"Id": "ct-" + ct.name}), contentType: ct.ct, body: carol, want: ct.want})
	}
	add(hostileEvent{name: "plain JSON without Ce headers", contentType: "application/json", body: carol, want: 415})
	add(hostileEvent{name: "nothing at all", contentType: "-", want: 415})

	// Sizes.
	add(hostileEvent{name: "binary data over 64 KiB", ce: b(map[string]string{"Id": "big"}), contentType: "application/json", body: over, want: 413})
	add(hostileEvent{name: "binary data over 64 KiB chunked", ce: b(map[string]string{"Id": "big-chunked"}), contentType: "application/json", body: over, chunked: true, want: 413})
	add(hostileEvent{name: "structured over 64 KiB", contentType: ceJSON, body: structured(map[string]any{"pad": strings.Repeat("p", 64<<10)}), want: 413})

	// Structured mode.
	for _, s := range []struct {
		name  string
		body  []byte
		want  int
		field string
	}{
		{"broken JSON", js(`{"specversion":"1.0",`), 400, ""},
		{"null", js("null"), 400, ""},
		{"array", js("[]"), 400, ""},
		{"string", js(`"event"`), 400, ""},
		{"empty body", js(""), 400, ""},
		{"invalid UTF-8", append(js("{\"specversion\":\"1.0\",\"id\":\"\xff\","), structured(nil)[1:]...), 400, ""},
		{"missing id", structured(map[string]any{"id": nil}), 400, ""},
		{"missing source", structured(map[string]any{"source": nil}), 400, ""},
		{"missing type", structured(map[string]any{"type": nil}), 400, ""},
		{"missing specversion", structured(map[string]any{"specversion": nil}), 400, ""},
		{"specversion 0.1", structured(map[string]any{"specversion": "0.1"}), 400, ""},
		{"specversion number", structured(map[string]any{"specversion": 1.0}), 400, ""},
		{"id number", structured(map[string]any{"id": 42}), 400, ""},
		{"id null", structured(map[string]any{"id": json.RawMessage("null")}), 400, ""},
		{"id object", structured(map[string]any{"id": map[string]int{"a": 1}}), 400, ""},
		{"id with NUL", structured(map[string]any{"id": "a\x00b"}), 400, ""},
		{"source with NUL", structured(map[string]any{"source": "/a\x00b"}), 400, ""},
		{"id over 1024 bytes", structured(map[string]any{"id": long}), 400, ""},
		{"other type", structured(map[string]any{"type": "com.example.user.delete"}), 400, ""},
		{"time not a timestamp", structured(map[string]any{"time": "yesterday"}), 400, ""},
		{"XML datacontenttype", structured(map[string]any{"datacontenttype": "application/xml"}), 400, ""},
		{"data a JSON string", structured(map[string]any{"data": string(carol)}), 400, "body"},
		{"data null", structured(map[string]any{"data": json.RawMessage("null")}), 400, "body"},
		{"no data", structured(map[string]any{"data": nil}), 400, "body"},
		{"data number", structured(map[string]any{"data": 7}), 400, "body"},
		{"data array", structured(map[string]any{"data": []string{"carol"}}), 400, "body"},
		{"data_base64 not base64", structured(map[string]any{"data": nil, "data_base64": "!!!not base64"}), 400, ""},
		{"data with extra field", structured(map[string]any{"data": map[string]any{"username": "carol", "email": "carol@example.com", "admin": true}}), 400, "admin"},
		{"data SQL injection", structured(map[string]any{"data": map[string]string{"username": "' OR '1'='1", "email": "carol@example.com"}}), 400, "username"},
		{"data script", structured(map[string]any{"data": map[string]string{"username": "carol", "email": "<script>@example.com"}}), 400, "email"},
		{"data fullwidth confusable", structured(map[string]any{"data": map[string]string{"username": "ａｌｉｃｅ", "email": "carol@example.com"}}), 400, "username"},
		{"data Alice taken", structured(map[string]any{"id": "alice-taken", "data": map[string]string{"username": "Alice", "email": "carol@example.com"}}), 422, "username"},
		{"data ALICE@EXAMPLE.COM taken", structured(map[string]any{"id": "alice-email-taken", "data": map[string]string{"username": "carol", "email": "ALICE@EXAMPLE.COM"}}), 422, "email"},
	} {
		add(hostileEvent{name: "structured " + s.name, contentType: ceJSON, body: s.body, want: s.want, wantField: s.field})
	}
	add(hostileEvent{name: "batch", contentType: "application/cloudevents-batch+json", body: js("[" + string(structured(nil)) + "]"), want: 415})
	add(hostileEvent{name: "cloudevents+xml", contentType: "application/cloudevents+xml", body: js("<event/>"), want: 415})

	// Methods.
	add(hostileEvent{name: "GET /", method: http.MethodGet, want: 405})
	add(hostileEvent{name: "PUT /", method: http.MethodPut, ce: b(map[string]string{"Id": "put"}), contentType: "application/json", body: carol, want: 405})
	add(hostileEvent{name: "DELETE /", method: http.MethodDelete, want: 405})

	// Truncated structured events: every 8th proper prefix of a valid one.
	whole := structured(map[string]any{"id": "truncated"})
	for i := 1; i < len(whole); i += 8 {
		add(hostileEvent{name: fmt.Sprintf("structured truncated at %d", i), contentType: ceJSON, body: whole[:i], want: 400})
	}

	// Give binary cases without an id of their own a distinct one, so no
	// case can be answered as a redelivery of another.
	for i := range cs {
		if cs[i].ce != nil {
			if _, ok := cs[i].ce["Id"]; !ok {
				cs[i].ce["Id"] = fmt.Sprintf("hostile-%d", i)
			}
		}
	}
	return cs
}

// eventRow is one processed_events row.
type eventRow struct {
	Source, ID, ReplyID string
	UserID              *int64
}

func eventSnapshot(t *testing.T, db *bun.DB) []eventRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT source, id, reply_id::text, user_id FROM processed_events ORDER BY source, id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []eventRow
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(&r.Source, &r.ID, &r.ReplyID, &r.UserID); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHostileEvents sends every malformed CloudEvents delivery in the
// table to POST / and checks the exact status (the one that tells Knative
// whether to retry), a problem+json body agreeing with it, that no markup
// is echoed raw, and that neither users nor processed_events changed.
func TestHostileEvents(t *testing.T) {
	db, cfg := testenv.DB(t)
	base, _ := serveApp(t, cfg, nil)
	c := &http.Client{Timeout: 30 * time.Second}
	mustCreate(t, c, base, "alice", "alice@example.com")
	mustCreate(t, c, base, "bob", "bob@example.com")
	// One event processed for real, so the events table is not empty.
	seed := hostileEvent{ce: binaryEvent(map[string]string{"Id": "seed"}), contentType: "application/json", body: userJSON("dave", "dave@example.com")}
	if status, b := sendEvent(t, c, base, seed); status != http.StatusOK {
		t.Fatalf("seed event: %d %s", status, b)
	}
	users, events := snapshot(t, db), eventSnapshot(t, db)
	if len(events) != 1 {
		t.Fatalf("%d processed events after the seed, want 1", len(events))
	}

	cases := hostileEventCases()
	if len(cases) < 100 {
		t.Fatalf("only %d hostile events; the table must hold at least 100", len(cases))
	}
	t.Logf("%d hostile CloudEvents deliveries", len(cases))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, b := sendEvent(t, c, base, tc)
			checkEventProblem(t, tc, status, b)
		})
	}

	if after := snapshot(t, db); !reflect.DeepEqual(users, after) {
		t.Errorf("users table changed:\nbefore %v\nafter  %v", users, after)
	}
	if after := eventSnapshot(t, db); !reflect.DeepEqual(events, after) {
		t.Errorf("processed_events changed:\nbefore %v\nafter  %v", events, after)
	}
}

func sendEvent(t *testing.T, c *http.Client, base string, tc hostileEvent) (int, []byte) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if tc.body != nil {
		body = bytes.NewReader(tc.body)
		if tc.chunked {
			body = io.MultiReader(body)
		}
	}
	req, err := http.NewRequest(method, base+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range tc.ce {
		if v != "-" {
			req.Header["Ce-"+k] = []string{v}
		}
	}
	if tc.contentType != "-" && tc.contentType != "" {
		req.Header.Set("Content-Type", tc.contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("Content-Type %q, want application/problem+json", ct)
		}
	}
	return resp.StatusCode, b
}

func checkEventProblem(t *testing.T, tc hostileEvent, status int, b []byte) {
	t.Helper()
	if status != tc.want {
		t.Fatalf("status %d, want %d; body %s", status, tc.want, b)
	}
	if bytes.ContainsAny(b, "<>") {
		t.Errorf("problem body echoes markup unescaped: %s", b)
	}
	var p testenv.Problem
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("problem body %s: %v", b, err)
	}
	if p.Status != tc.want || p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Errorf("problem %+v does not match status %d", p, tc.want)
	}
	if tc.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.wantField) {
		t.Errorf("field errors %+v, want the first for %q", p.Errors, tc.wantField)
	}
}
