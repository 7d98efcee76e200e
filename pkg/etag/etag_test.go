package etag

import "testing"

func TestNoneMatch(t *testing.T) {
	tag := Of([]byte("body"))
	for _, tt := range []struct {
		name   string
		fields []string
		want   bool
	}{
		{"none", nil, false},
		{"the tag", []string{tag}, true},
		{"weak form", []string{"W/" + tag}, true},
		{"in a list", []string{`"a", ` + tag + `, "b"`}, true},
		{"in a second field", []string{`"a"`, tag}, true},
		{"any", []string{"*"}, true},
		{"another", []string{`"a"`}, false},
		{"another body's", []string{Of([]byte("other"))}, false},
		{"unquoted", []string{tag[1 : len(tag)-1]}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := NoneMatch(tt.fields, tag); got != tt.want {
				t.Errorf("NoneMatch(%q, %s) = %v, want %v", tt.fields, tag, got, tt.want)
			}
		})
	}
	if Of([]byte("body")) != tag || len(tag) != 34 {
		t.Errorf("Of is not stable or not 32 hex digits in quotes: %s", tag)
	}
}

// BenchmarkOf is the ETag's cost on a GET /user/{id} body (about 100
// bytes), against the route's 80-90 µs of app CPU (docs/performance.md).
func BenchmarkOf(b *testing.B) {
	body := []byte(`{"id":12345,"username":"someone","email":"someone@example.com","created_at":"2026-12-02T07:00:00.123456Z"}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		_ = Of(body)
	}
}
