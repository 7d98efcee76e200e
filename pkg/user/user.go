// Package user holds the user record and the rules a new one must follow.
// Both the HTTP API and the CloudEvents handler decode through ParseNew, so
// the two ways in cannot disagree on what a valid user is.
package user

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits of a new user.
const (
	MaxUsernameLen = 64
	MaxEmailLen    = 254
)

// User is a stored user, and in this form the API's JSON object. The
// store gives CreatedAt in UTC, which encoding/json writes as RFC 3339
// with "Z" and the fraction's trailing zeros trimmed.
type User struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// New is a user to create.
type New struct {
	Username string
	Email    string
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Errors: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// ParseNew decodes and validates one JSON object holding exactly the
// string fields "username" and "email". Anything else (unknown or repeated
// fields, other types, trailing data, invalid UTF-8) is a *ValidationError.
//
// It walks encoding/json's tokens instead of decoding into a struct because
// Decode cannot say no where this must: it matches keys without regard to
// case ("Username" would fill username), takes a null into a string as "",
// keeps the last of a repeated key, and scans a whole value, however deep,
// before looking at its field. docs/performance.md has the measurement.
func ParseNew(data []byte) (New, error) {
	if !utf8.Valid(data) {
		return New{}, invalid("body", "is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return New{}, syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return New{}, invalid("body", "must be a JSON object")
	}
	var n New
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return New{}, syntaxError(err)
		}
		key, _ := tok.(string)
		if key != "username" && key != "email" {
			return New{}, invalid(key, "unknown field; only username and email are accepted")
		}
		if seen[key] {
			return New{}, invalid(key, "appears more than once")
		}
		seen[key] = true
		tok, err = dec.Token()
		if err != nil {
			return New{}, syntaxError(err)
		}
		s, ok := tok.(string)
		if !ok {
			if d, isDelim := tok.(json.Delim); isDelim && (d == '{' || d == '[') {
				return New{}, invalid(key, "must be a string, not %s", kind(d))
			}
			return New{}, invalid(key, "must be a string, not %s", kind(tok))
		}
		if key == "username" {
			n.Username = s
		} else {
			n.Email = s
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return New{}, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return New{}, invalid("body", "must hold exactly one JSON object; found data after it")
	}
	var missing []FieldError
	for _, f := range []string{"username", "email"} {
		if !seen[f] {
			missing = append(missing, FieldError{Field: f, Message: "is required"})
		}
	}
	if len(missing) > 0 {
		return New{}, &ValidationError{Errors: missing}
	}
	return n, n.Validate()
}

func syntaxError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("body", "is empty or truncated JSON")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("body", "is not valid JSON at byte %d", se.Offset)
	}
	return invalid("body", "is not valid JSON")
}

func kind(tok any) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "an array"
	}
	return "another type"
}

// Validate checks the fields of n and reports every field that is wrong.
func (n New) Validate() error {
	var errs []FieldError
	if msg := checkUsername(n.Username); msg != "" {
		errs = append(errs, FieldError{Field: "username", Message: msg})
	}
	if msg := checkEmail(n.Email); msg != "" {
		errs = append(errs, FieldError{Field: "email", Message: msg})
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

func checkUsername(s string) string {
	const rule = "must be 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
	if s == "" || len(s) > MaxUsernameLen {
		return rule
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return rule
		}
	}
	return ""
}

func checkEmail(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > MaxEmailLen {
		return "must be at most 254 characters"
	}
	for _, r := range s {
		// net/mail lets some of these through in quoted parts; none belongs
		// in a stored address.
		if r < 0x21 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return "must not contain spaces or control characters"
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "must be a plain email address such as name@example.com"
	}
	return ""
}

// AppendJSON appends u as encoding/json writes it, byte for byte (the
// struct tags above; TestAppendJSON and FuzzAppendJSON hold the two
// together). It is written by hand for the list, which encodes every row:
// there encoding/json cost a third more CPU per request (time.Time's
// MarshalJSON allocates, and encoding/json re-scans what it returns);
// docs/performance.md has the figures. One user at a time goes through
// encoding/json.
func (u *User) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, u.ID, 10)
	b = append(b, `,"username":`...)
	b = appendString(b, u.Username)
	b = append(b, `,"email":`...)
	b = appendString(b, u.Email)
	b = append(b, `,"created_at":"`...)
	b = u.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it: what JSON requires and what HTML or JavaScript embedding
// would trip on.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
