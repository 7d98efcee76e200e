package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
)

// hostile is one malformed request and the exact answer it must get.
type hostile struct {
	name        string
	method      string // POST when empty
	path        string // /user when empty
	contentType string // application/json when empty; "-" sends none
	header      http.Header
	body        []byte
	chunked     bool // hide the length: the body goes out chunked
	want        int
	wantType    string // problem type, when it matters
	wantField   string // the first field error's field, when it matters
	netHTTP     bool   // answered by net/http itself, not the service: text/plain
}

func js(s string) []byte { return []byte(s) }

// userJSON builds a body with both fields as JSON strings (escaped by
// encoding/json, so the value reaches the service exactly).
func userJSON(username, email string) []byte {
	b, _ := json.Marshal(map[string]string{"username": username, "email": email})
	return b
}

const (
	validation = "urn:problem:users:validation"
	conflict   = "urn:problem:users:conflict"
)

// hostileCases returns the table. Existing users are alice and bob (see
// TestHostileInput); nothing in the table may create a row.
func hostileCases() []hostile {
	long := strings.Repeat("a", 65)
	huge := strings.Repeat("x", 10_000)
	bigEmail := strings.Repeat("e", 245) + "@example.com" // 257 > 254
	almostLimit := strings.Repeat("y", 60_000)            // fits MaxBody, fails validation
	overBody := append(append(js(`{"username":"carol","email":"carol@example.com","pad":"`), bytes.Repeat([]byte("p"), 64<<10)...), js(`"}`)...)
	deep := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
	bigHeader := http.Header{"X-Padding": {strings.Repeat("h", 100<<10)}}
	manyHeaders := http.Header{}
	for i := range 2000 {
		manyHeaders.Set(fmt.Sprintf("X-H-%d", i), strings.Repeat("v", 40))
	}

	v := validation
	cs := []hostile{
		// Broken and truncated JSON.
		{name: "empty body", body: js(""), want: 400, wantType: v, wantField: "body"},
		{name: "whitespace only", body: js(" \n\t "), want: 400, wantType: v, wantField: "body"},
		{name: "open brace", body: js("{"), want: 400, wantType: v, wantField: "body"},
		{name: "close brace", body: js("}"), want: 400, wantType: v, wantField: "body"},
		{name: "unterminated object", body: js(`{"username":"carol"`), want: 400, wantType: v, wantField: "body"},
		{name: "trailing comma", body: js(`{"username":"carol","email":"carol@example.com",}`), want: 400, wantType: v, wantField: "body"},
		{name: "single quotes", body: js(`{'username':'carol','email':'carol@example.com'}`), want: 400, wantType: v, wantField: "body"},
		{name: "bare keys", body: js(`{username:"carol",email:"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "missing comma", body: js(`{"username":"carol" "email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "missing colon", body: js(`{"username" "carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "extra close brace", body: js(`{"username":"carol","email":"carol@example.com"}}`), want: 400, wantType: v, wantField: "body"},
		{name: "two objects", body: js(`{"username":"carol","email":"carol@example.com"}{"username":"dave","email":"dave@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "garbage after object", body: js(`{"username":"carol","email":"carol@example.com"} garbage`), want: 400, wantType: v, wantField: "body"},
		{name: "escaped closing quote", body: js(`{"username":"carol\","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "invalid escape", body: js(`{"username":"car\xol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "short unicode escape", body: js(`{"username":"car\u00","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "comment", body: js(`{"username":"carol",/* hi */"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "UTF-8 byte order mark", body: append(js("\xef\xbb\xbf"), userJSON("carol", "carol@example.com")...), want: 400, wantType: v, wantField: "body"},
		{name: "NaN value", body: js(`{"username":NaN,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "trailing comma after field", body: js(`{"username":"carol","email":"carol@example.com",`), want: 400, wantType: v, wantField: "body"},

		// Not an object at all.
		{name: "null body", body: js("null"), want: 400, wantType: v, wantField: "body"},
		{name: "string body", body: js(`"carol"`), want: 400, wantType: v, wantField: "body"},
		{name: "number body", body: js("42"), want: 400, wantType: v, wantField: "body"},
		{name: "boolean body", body: js("true"), want: 400, wantType: v, wantField: "body"},
		{name: "empty array", body: js("[]"), want: 400, wantType: v, wantField: "body"},
		{name: "array of the user", body: js(`[{"username":"carol","email":"carol@example.com"}]`), want: 400, wantType: v, wantField: "body"},
		{name: "10000 nested arrays", body: js(deep), want: 400, wantType: v, wantField: "body"},

		// Wrong types, nulls, arrays and objects in fields.
		{name: "username number", body: js(`{"username":123,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "username float", body: js(`{"username":1.5e10,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "username boolean", body: js(`{"username":true,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "email boolean", body: js(`{"username":"carol","email":false}`), want: 400, wantType: v, wantField: "email"},
		{name: "email zero", body: js(`{"username":"carol","email":0}`), want: 400, wantType: v, wantField: "email"},
		{name: "username null", body: js(`{"username":null,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "email null", body: js(`{"username":"carol","email":null}`), want: 400, wantType: v, wantField: "email"},
		{name: "both null", body: js(`{"username":null,"email":null}`), want: 400, wantType: v, wantField: "username"},
		{name: "username array", body: js(`{"username":["carol"],"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "email empty array", body: js(`{"username":"carol","email":[]}`), want: 400, wantType: v, wantField: "email"},
		{name: "username object", body: js(`{"username":{"first":"carol"},"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "email object", body: js(`{"username":"carol","email":{}}`), want: 400, wantType: v, wantField: "email"},
		{name: "user wrapped in object", body: js(`{"user":{"username":"carol","email":"carol@example.com"}}`), want: 400, wantType: v, wantField: "user"},
		{name: "username deeply nested", body: js(`{"username":` + deep + `,"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},

		// Missing, extra, repeated and misspelt fields.
		{name: "empty object", body: js(`{}`), want: 400, wantType: v, wantField: "username"},
		{name: "username only", body: js(`{"username":"carol"}`), want: 400, wantType: v, wantField: "email"},
		{name: "email only", body: js(`{"email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "extra admin field", body: js(`{"username":"carol","email":"carol@example.com","admin":true}`), want: 400, wantType: v, wantField: "admin"},
		{name: "client-chosen id", body: js(`{"id":1,"username":"carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "id"},
		{name: "client-chosen created_at", body: js(`{"username":"carol","email":"carol@example.com","created_at":"2000-01-01T00:00:00Z"}`), want: 400, wantType: v, wantField: "created_at"},
		{name: "username twice", body: js(`{"username":"carol","username":"alice","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "email twice", body: js(`{"username":"carol","email":"carol@example.com","email":"x@example.com"}`), want: 400, wantType: v, wantField: "email"},
		{name: "capitalised key", body: js(`{"Username":"carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "Username"},
		{name: "prototype pollution key", body: js(`{"__proto__":{"admin":true},"username":"carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "__proto__"},
		{name: "empty username", body: userJSON("", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "empty email", body: userJSON("carol", ""), want: 400, wantType: v, wantField: "email"},
		{name: "leading space in username", body: userJSON(" carol", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "trailing space in username", body: userJSON("carol ", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "space inside username", body: userJSON("carol smith", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "username starts with dot", body: userJSON(".carol", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "username starts with dash", body: userJSON("-carol", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "username starts with underscore", body: userJSON("_carol", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "email without at", body: userJSON("carol", "carol.example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "email with display name", body: userJSON("carol", "Carol <carol@example.com>"), want: 400, wantType: v, wantField: "email"},
		{name: "two emails", body: userJSON("carol", "carol@example.com,dave@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "email with space", body: userJSON("carol", "carol @example.com"), want: 400, wantType: v, wantField: "email"},

		// Huge strings and bodies.
		{name: "username 65 characters", body: userJSON(long, "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "username 10000 characters", body: userJSON(huge, "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "email 257 characters", body: userJSON("carol", bigEmail), want: 400, wantType: v, wantField: "email"},
		{name: "60000-character username", body: userJSON(almostLimit, "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "60000-character email", body: userJSON("carol", almostLimit+"@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "body over 64 KiB with length", body: overBody, want: 413},
		{name: "body over 64 KiB chunked", body: overBody, chunked: true, want: 413},
		{name: "body of 1 MiB", body: bytes.Repeat([]byte(" "), 1<<20), want: 413},
		{name: "body of 1 MiB chunked", body: bytes.Repeat([]byte("{"), 1<<20), chunked: true, want: 413},

		// Invalid UTF-8, NUL bytes and control characters.
		{name: "0xff in username", body: js("{\"username\":\"car\xffol\",\"email\":\"carol@example.com\"}"), want: 400, wantType: v, wantField: "body"},
		{name: "overlong slash", body: js("{\"username\":\"car\xc0\xafol\",\"email\":\"carol@example.com\"}"), want: 400, wantType: v, wantField: "body"},
		{name: "truncated multibyte", body: js("{\"username\":\"carol\",\"email\":\"carol@example.com\xe2\x82\"}"), want: 400, wantType: v, wantField: "body"},
		{name: "UTF-8 encoded surrogate", body: js("{\"username\":\"carol\xed\xa0\x80\",\"email\":\"carol@example.com\"}"), want: 400, wantType: v, wantField: "body"},
		{name: "UTF-16LE body", body: utf16le(`{"username":"carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "body"},
		{name: "lone surrogate escape", body: js(`{"username":"carol\ud800","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "escaped NUL in username", body: js(`{"username":"carol\u0000","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "username"},
		{name: "escaped NUL in email", body: js(`{"username":"carol","email":"carol\u0000@example.com"}`), want: 400, wantType: v, wantField: "email"},
		{name: "raw NUL in string", body: js("{\"username\":\"car\x00ol\",\"email\":\"carol@example.com\"}"), want: 400, wantType: v, wantField: "body"},
		{name: "raw NUL body", body: js("\x00"), want: 400, wantType: v, wantField: "body"},
		{name: "NUL after object", body: append(userJSON("carol", "carol@example.com"), 0), want: 400, wantType: v, wantField: "body"},
		{name: "newline in username", body: userJSON("carol\n", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "tab in email", body: userJSON("carol", "carol\t@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "CRLF header injection in email", body: userJSON("carol", "carol@example.com\r\nBcc: x@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "line separator in email", body: userJSON("carol", "carol\u2028@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "DEL in email", body: userJSON("carol", "carol\x7f@example.com"), want: 400, wantType: v, wantField: "email"},

		// SQL injection.
		{name: "SQL drop table in username", body: userJSON("carol'; DROP TABLE users;--", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL tautology in username", body: userJSON("' OR '1'='1", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL comment in username", body: userJSON("admin'--", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL block comment in username", body: userJSON("admin'/*", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL sleep in username", body: userJSON("1;SELECT pg_sleep(10)", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL union in username", body: userJSON("x UNION SELECT * FROM pg_user", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "SQL delete in email", body: userJSON("carol", "carol@example.com'; DELETE FROM users;--"), want: 400, wantType: v, wantField: "email"},
		{name: "SQL tautology in email", body: userJSON("carol", "x@example.com' OR 1=1--"), want: 400, wantType: v, wantField: "email"},
		{name: "SQL no-space injection in email", body: userJSON("carol", "x@example.com';DROP/**/TABLE/**/users;--"), want: 400, wantType: v, wantField: "email"},
		{name: "bun placeholder in username", body: userJSON("?0?", "carol@example.com"), want: 400, wantType: v, wantField: "username"},

		// HTML and script injection.
		{name: "script tag username", body: userJSON("<script>alert(1)</script>", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "img onerror username", body: userJSON(`<img src=x onerror=alert(1)>`, "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "script tag email", body: userJSON("carol", "<script>@example.com"), want: 400, wantType: v, wantField: "email"},
		{name: "quoted script email", body: userJSON("carol", `"<script>alert(1)</script>"@example.com`), want: 400, wantType: v, wantField: "email"},
		{name: "script tag as field name", body: js(`{"<script>alert(1)</script>":"x","username":"carol","email":"carol@example.com"}`), want: 400, wantType: v, wantField: "<script>alert(1)</script>"},
		{name: "javascript URL username", body: userJSON("javascript:alert(1)", "carol@example.com"), want: 400, wantType: v, wantField: "username"},

		// Overlong and unicode-confusable names.
		{name: "cyrillic a in alice", body: userJSON("\u0430lice", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "fullwidth alice", body: userJSON("ａｌｉｃｅ", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "greek alpha", body: userJSON("\u03b1lice", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "zero-width space", body: userJSON("alice\u200b", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "right-to-left override", body: userJSON("\u202ealice", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "combining accent", body: userJSON("ali\u0301ce", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "turkish dotted capital I", body: userJSON("AL\u0130CE", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "kelvin sign", body: userJSON("\u212aarol", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "soft hyphen", body: userJSON("ali\u00adce", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "emoji username", body: userJSON("alice\U0001F600", "carol@example.com"), want: 400, wantType: v, wantField: "username"},
		{name: "overlong confusable", body: userJSON(strings.Repeat("\u0430", 64), "carol@example.com"), want: 400, wantType: v, wantField: "username"},

		// Case variants of existing users.
		{name: "ALICE", body: userJSON("ALICE", "carol@example.com"), want: 409, wantType: conflict, wantField: "username"},
		{name: "Alice", body: userJSON("Alice", "carol@example.com"), want: 409, wantType: conflict, wantField: "username"},
		{name: "aLiCe", body: userJSON("aLiCe", "carol@example.com"), want: 409, wantType: conflict, wantField: "username"},
		{name: "alice again", body: userJSON("alice", "alice2@example.com"), want: 409, wantType: conflict, wantField: "username"},
		{name: "ALICE@EXAMPLE.COM", body: userJSON("carol", "ALICE@EXAMPLE.COM"), want: 409, wantType: conflict, wantField: "email"},
		{name: "Bob@Example.Com", body: userJSON("carol", "Bob@Example.Com"), want: 409, wantType: conflict, wantField: "email"},
		{name: "exact duplicate", body: userJSON("bob", "bob@example.com"), want: 409, wantType: conflict},

		// Content types.
		{name: "no content type", contentType: "-", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "empty content type", contentType: " ", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "text/plain", contentType: "text/plain", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded", body: js("username=carol&email=carol%40example.com"), want: 415},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: js("--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\ncarol\r\n--x--\r\n"), want: 415},
		{name: "xml", contentType: "application/xml", body: js("<user><username>carol</username></user>"), want: 415},
		{name: "json in UTF-16", contentType: "application/json; charset=utf-16", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "json in latin1", contentType: "application/json; charset=iso-8859-1", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "jsonp", contentType: "application/javascript", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "text/json", contentType: "text/json", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "json suffix type", contentType: "application/merge-patch+json", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "malformed media type", contentType: "application/json garbage", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "two media types", contentType: "application/json, text/plain", body: userJSON("carol", "carol@example.com"), want: 415},
		{name: "octet stream", contentType: "application/octet-stream", body: userJSON("carol", "carol@example.com"), want: 415},

		// Bad query parameters on GET /user.
		{name: "limit 0", method: "GET", path: "/user?limit=0", want: 400, wantType: v, wantField: "limit"},
		{name: "limit negative", method: "GET", path: "/user?limit=-1", want: 400, wantType: v, wantField: "limit"},
		{name: "limit 1001", method: "GET", path: "/user?limit=1001", want: 400, wantType: v, wantField: "limit"},
		{name: "limit huge", method: "GET", path: "/user?limit=99999999999999999999", want: 400, wantType: v, wantField: "limit"},
		{name: "limit word", method: "GET", path: "/user?limit=abc", want: 400, wantType: v, wantField: "limit"},
		{name: "limit fraction", method: "GET", path: "/user?limit=1.5", want: 400, wantType: v, wantField: "limit"},
		{name: "limit hex", method: "GET", path: "/user?limit=0x10", want: 400, wantType: v, wantField: "limit"},
		{name: "limit empty", method: "GET", path: "/user?limit=", want: 400, wantType: v, wantField: "limit"},
		{name: "limit twice", method: "GET", path: "/user?limit=1&limit=2", want: 400, wantType: v, wantField: "limit"},
		{name: "limit script", method: "GET", path: "/user?limit=%3Cscript%3E", want: 400, wantType: v, wantField: "limit"},
		{name: "limit SQL", method: "GET", path: "/user?limit=1%3BDROP%20TABLE%20users", want: 400, wantType: v, wantField: "limit"},
		{name: "query bad escape", method: "GET", path: "/user?limit=%zz", want: 400, wantType: v, wantField: "query"},
		{name: "query semicolon", method: "GET", path: "/user?limit=1;x=2", want: 400, wantType: v, wantField: "query"},
		{name: "after negative", method: "GET", path: "/user?after=-1", want: 400, wantType: v, wantField: "after"},
		{name: "after word", method: "GET", path: "/user?after=abc", want: 400, wantType: v, wantField: "after"},
		{name: "after overflow", method: "GET", path: "/user?after=99999999999999999999", want: 400, wantType: v, wantField: "after"},
		{name: "after empty", method: "GET", path: "/user?after=", want: 400, wantType: v, wantField: "after"},
		{name: "after twice", method: "GET", path: "/user?after=1&after=2", want: 400, wantType: v, wantField: "after"},
		{name: "after SQL", method: "GET", path: "/user?after=0%20OR%201%3D1", want: 400, wantType: v, wantField: "after"},

		// Bad ids, paths and methods.
		{name: "id word", method: "GET", path: "/user/abc", want: 404},
		{name: "id zero", method: "GET", path: "/user/0", want: 404},
		{name: "id negative", method: "GET", path: "/user/-1", want: 404},
		{name: "id overflow", method: "GET", path: "/user/99999999999999999999", want: 404},
		{name: "id with NUL", method: "GET", path: "/user/1%00", want: 404},
		{name: "id SQL", method: "GET", path: "/user/1%20OR%201=1", want: 404},
		{name: "id absent", method: "GET", path: "/user/999999999", want: 404},
		{name: "id with extra segment", method: "GET", path: "/user/1/extra", want: 404},
		{name: "unknown path", method: "GET", path: "/admin", want: 404},
		{name: "PUT /user", method: "PUT", body: userJSON("carol", "carol@example.com"), want: 405},
		{name: "PATCH /user", method: "PATCH", body: userJSON("carol", "carol@example.com"), want: 405},
		{name: "DELETE /user", method: "DELETE", want: 405},
		{name: "DELETE /user/1", method: "DELETE", path: "/user/1", want: 405},
		{name: "POST /user/1", method: "POST", path: "/user/1", body: userJSON("carol", "carol@example.com"), want: 405},

		// Oversized headers: net/http answers these before the service
		// sees the request, in plain text.
		{name: "100 KiB header on POST", header: bigHeader, body: userJSON("carol", "carol@example.com"), want: 431, netHTTP: true},
		{name: "100 KiB header on GET", method: "GET", header: bigHeader, want: 431, netHTTP: true},
		{name: "2000 headers", header: manyHeaders, body: userJSON("carol", "carol@example.com"), want: 431, netHTTP: true},
	}

	// Every proper prefix of a valid body is truncated JSON.
	valid := userJSON("carol", "carol@example.com")
	for i := 1; i < len(valid); i++ {
		cs = append(cs, hostile{name: fmt.Sprintf("truncated at %d", i), body: valid[:i], want: 400, wantType: v, wantField: "body"})
	}
	return cs
}

func utf16le(s string) []byte {
	b := []byte{0xff, 0xfe}
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// TestHostileInput sends every request in the table to the service behind
// the production http.Server settings and checks the exact status, a
// problem+json body that agrees with it, that no markup is echoed raw, and
// that the users table is exactly as it was.
func TestHostileInput(t *testing.T) {
	db, cfg := testenv.DB(t)
	base, _ := serveApp(t, cfg, nil)
	c := &http.Client{Timeout: 30 * time.Second}
	mustCreate(t, c, base, "alice", "alice@example.com")
	mustCreate(t, c, base, "bob", "bob@example.com")
	before := snapshot(t, db)

	cases := hostileCases()
	if len(cases) < 100 {
		t.Fatalf("only %d hostile cases; the table must hold at least 100", len(cases))
	}
	hand := 0
	for _, tc := range cases {
		if !strings.HasPrefix(tc.name, "truncated at ") {
			hand++
		}
	}
	t.Logf("%d hostile requests (%d written out, %d generated truncations)", len(cases), hand, len(cases)-hand)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkHostile(t, c, base, tc)
		})
	}

	if after := snapshot(t, db); !reflect.DeepEqual(before, after) {
		t.Errorf("users table changed:\nbefore %v\nafter  %v", before, after)
	}
}

func checkHostile(t *testing.T, c *http.Client, base string, tc hostile) {
	t.Helper()
	method, path := tc.method, tc.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/user"
	}
	var body io.Reader
	if tc.body != nil {
		body = bytes.NewReader(tc.body)
		if tc.chunked {
			body = io.MultiReader(body) // no Len: sent chunked
		}
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range tc.header {
		req.Header[k] = vs
	}
	switch tc.contentType {
	case "":
		if tc.body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
	case "-":
	default:
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
	if resp.StatusCode != tc.want {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.want, b)
	}
	ct := resp.Header.Get("Content-Type")
	if tc.netHTTP {
		// net/http's own answer; the service never saw the request.
		if want := fmt.Sprintf("%d %s", tc.want, http.StatusText(tc.want)); string(b) != want {
			t.Fatalf("body %q, want net/http's %q", b, want)
		}
		return
	}
	if ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, b)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", resp.Header.Get("X-Content-Type-Options"))
	}
	if bytes.ContainsAny(b, "<>") {
		t.Errorf("problem body echoes markup unescaped: %s", b)
	}
	var p testenv.Problem
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", b, err)
	}
	if p.Status != tc.want || p.Type == "" || p.Title == "" {
		t.Errorf("problem %+v does not match status %d", p, tc.want)
	}
	if tc.wantType != "" && p.Type != tc.wantType {
		t.Errorf("problem type %q, want %q", p.Type, tc.wantType)
	}
	if tc.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.wantField) {
		t.Errorf("field errors %+v, want the first for %q", p.Errors, tc.wantField)
	}
}
