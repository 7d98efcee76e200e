package user

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseNew(t *testing.T) {
	long := strings.Repeat("a", MaxUsernameLen)
	longEmail := strings.Repeat("e", 64) + "@" + strings.Repeat("d", 180) + ".example" // 253 chars
	tests := []struct {
		name  string
		body  string
		want  New
		field string // the field the error must name; "" means valid
	}{
		{"valid", `{"username":"alice","email":"alice@example.com"}`, New{"alice", "alice@example.com"}, ""},
		{"valid reversed order", `{"email":"b@example.com","username":"b.o_b-1"}`, New{"b.o_b-1", "b@example.com"}, ""},
		{"max length username", `{"username":"` + long + `","email":"a@example.com"}`, New{long, "a@example.com"}, ""},
		{"long email", `{"username":"a","email":"` + longEmail + `"}`, New{"a", longEmail}, ""},
		{"whitespace around", " \n{ \"username\" : \"x\" , \"email\" : \"x@y.io\" }\n", New{"x", "x@y.io"}, ""},
		{"digit first", `{"username":"1abc","email":"x@y.io"}`, New{"1abc", "x@y.io"}, ""},

		{"empty body", ``, New{}, "body"},
		{"truncated", `{"username":"alice","email":"a@`, New{}, "body"},
		{"not json", `username=alice`, New{}, "body"},
		{"array", `[{"username":"a","email":"a@b.c"}]`, New{}, "body"},
		{"string", `"alice"`, New{}, "body"},
		{"null", `null`, New{}, "body"},
		{"trailing object", `{"username":"a","email":"a@b.c"}{}`, New{}, "body"},
		{"trailing garbage", `{"username":"a","email":"a@b.c"} x`, New{}, "body"},
		{"invalid utf8", "{\"username\":\"a\xff\",\"email\":\"a@b.c\"}", New{}, "body"},
		{"unknown field", `{"username":"a","email":"a@b.c","admin":true}`, New{}, "admin"},
		{"duplicate field", `{"username":"a","username":"b","email":"a@b.c"}`, New{}, "username"},
		{"missing username", `{"email":"a@b.c"}`, New{}, "username"},
		{"missing email", `{"username":"a"}`, New{}, "email"},
		{"empty object", `{}`, New{}, "username"},
		{"username number", `{"username":1,"email":"a@b.c"}`, New{}, "username"},
		{"username null", `{"username":null,"email":"a@b.c"}`, New{}, "username"},
		{"username bool", `{"username":true,"email":"a@b.c"}`, New{}, "username"},
		{"username object", `{"username":{"x":1},"email":"a@b.c"}`, New{}, "username"},
		{"email array", `{"username":"a","email":["a@b.c"]}`, New{}, "email"},
		{"empty username", `{"username":"","email":"a@b.c"}`, New{}, "username"},
		{"username too long", `{"username":"` + long + `a","email":"a@b.c"}`, New{}, "username"},
		{"username starts with dot", `{"username":".a","email":"a@b.c"}`, New{}, "username"},
		{"username with space", `{"username":"a b","email":"a@b.c"}`, New{}, "username"},
		{"username non-ascii", `{"username":"аlice","email":"a@b.c"}`, New{}, "username"},
		{"username NUL", `{"username":"a\u0000","email":"a@b.c"}`, New{}, "username"},
		{"username sql", `{"username":"a'; DROP TABLE users;--","email":"a@b.c"}`, New{}, "username"},
		{"email missing at", `{"username":"a","email":"abc"}`, New{}, "email"},
		{"email display name", `{"username":"a","email":"Alice <a@b.c>"}`, New{}, "email"},
		{"email angle", `{"username":"a","email":"<a@b.c>"}`, New{}, "email"},
		{"email space", `{"username":"a","email":"a @b.c"}`, New{}, "email"},
		{"email newline", `{"username":"a","email":"a@b.c\n"}`, New{}, "email"},
		{"email too long", `{"username":"a","email":"` + longEmail + `xx"}`, New{}, "email"},
		{"email html", `{"username":"a","email":"<script>@b.c"}`, New{}, "email"},
		{"empty email", `{"username":"a","email":""}`, New{}, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNew([]byte(tt.body))
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ParseNew: %v", err)
				}
				if got != tt.want {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if verr.Errors[0].Field != tt.field {
				t.Fatalf("error names %q (%v), want %q", verr.Errors[0].Field, verr, tt.field)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	err := New{Username: "", Email: "nope"}.Validate()
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Errors) != 2 {
		t.Fatalf("got %v, want errors for both fields", err)
	}
}

// TestUserJSON pins the exact bytes of a user's JSON. The strings hold
// what the escaping must get right, whether or not validation lets it into
// the database: quotes, backslashes, HTML-significant characters, control
// characters, JavaScript's line separators and invalid UTF-8. Each case
// is checked through encoding/json and through AppendJSON.
func TestUserJSON(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	tests := []struct {
		name string
		u    User
		want string
	}{
		{"plain", User{42, "alice", "alice@example.com", at},
			`{"id":42,"username":"alice","email":"alice@example.com","created_at":"2026-11-27T10:00:00.123456Z"}`},
		{"whole second", User{1, "a", "a@b.c", at.Truncate(time.Second)},
			`{"id":1,"username":"a","email":"a@b.c","created_at":"2026-11-27T10:00:00Z"}`},
		{"trailing zeros", User{1, "a", "a@b.c", at.Truncate(10 * time.Millisecond)},
			`{"id":1,"username":"a","email":"a@b.c","created_at":"2026-11-27T10:00:00.12Z"}`},
		{"zero", User{}, `{"id":0,"username":"","email":"","created_at":"0001-01-01T00:00:00Z"}`},
		{"quotes and html", User{9223372036854775807, `quo"te\back`, "<tag>&amp;'@x.y", at},
			`{"id":9223372036854775807,"username":"quo\"te\\back","email":"\u003ctag\u003e\u0026amp;'@x.y","created_at":"2026-11-27T10:00:00.123456Z"}`},
		{"controls", User{1, "ctl\x00\x01\x1f\x7f", "tab\tnl\ncr\r@x", at},
			`{"id":1,"username":"ctl\u0000\u0001\u001f` + "\x7f" + `","email":"tab\tnl\ncr\r@x","created_at":"2026-11-27T10:00:00.123456Z"}`},
		{"backspace and form feed", User{1, "\b", "\f", at},
			`{"id":1,"username":"\b","email":"\f","created_at":"2026-11-27T10:00:00.123456Z"}`},
		{"not UTC", User{1, "a", "a@b.c", at.In(time.FixedZone("", 5*3600+1800))},
			`{"id":1,"username":"a","email":"a@b.c","created_at":"2026-11-27T15:30:00.123456+05:30"}`},
		{"unicode", User{1, "ünï€😀", "line\u2028sep\u2029@x.y", at},
			`{"id":1,"username":"ünï€😀","email":"line\u2028sep\u2029@x.y","created_at":"2026-11-27T10:00:00.123456Z"}`},
		{"invalid utf8", User{1, "bad\xffutf8", "\xed\xa0\x80@x", at},
			`{"id":1,"username":"bad\ufffdutf8","email":"\ufffd\ufffd\ufffd@x","created_at":"2026-11-27T10:00:00.123456Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.u)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("json.Marshal:\n got %s\nwant %s", got, tt.want)
			}
			if got := tt.u.AppendJSON(nil); string(got) != tt.want {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzAppendJSON checks that AppendJSON writes what encoding/json writes
// for any strings and time.
func FuzzAppendJSON(f *testing.F) {
	f.Add(int64(1), "alice", "a&b@x.y", int64(1795773600123456000))
	f.Add(int64(-7), "\x00\b\f\u2028\xff<", "\xed\xa0\x80\"\\", int64(0))
	f.Fuzz(func(t *testing.T, id int64, username, email string, nanos int64) {
		u := User{id, username, email, time.Unix(0, nanos).UTC()}
		want, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON %s\nencoding/json %s", got, want)
		}
	})
}

// FuzzParseNew checks that no input panics, that accepted input is valid
// by the rules, and that accepting is stable under re-encoding.
func FuzzParseNew(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","email":"alice@example.com"}`,
		`{"username":1}`, `[]`, `{"email":"x@y","username":"x","x":1}`, "{\"username\":\"\xff\"}", `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNew(data)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Errors) == 0 {
				t.Fatalf("error %v is not a non-empty *ValidationError", err)
			}
			return
		}
		if verr := n.Validate(); verr != nil {
			t.Fatalf("accepted %q but Validate says %v", data, verr)
		}
		again, err := json.Marshal(map[string]string{"username": n.Username, "email": n.Email})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := ParseNew(again); err != nil || m != n {
			t.Fatalf("re-encoded %s parsed to %+v, %v; want %+v", again, m, err, n)
		}
	})
}
