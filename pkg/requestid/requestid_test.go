package requestid_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/example/users/pkg/requestid"
)

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"5f0c7a1e-3b9d-4c2a-9e8f-1d2c3b4a5f6e", true},
		{"trace_id.span:01-abc", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"has space", false},
		{"new\nline", false},
		{"quote\"", false},
		{"<script>", false},
		{"ümlaut", false},
		{"semi;colon", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := requestid.Valid(tt.id); got != tt.want {
				t.Errorf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := requestid.New()
		if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("New() = %q, want 32 hex digits", id)
		}
		if !requestid.Valid(id) {
			t.Fatalf("New() = %q is not Valid", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

type otherKey struct{}

func TestContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"none", context.Background(), ""},
		{"set", requestid.With(context.Background(), "abc"), "abc"},
		{"inner wins", requestid.With(requestid.With(context.Background(), "outer"), "inner"), "inner"},
		{"survives derived contexts", context.WithValue(requestid.With(context.Background(), "abc"), otherKey{}, 1), "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := requestid.From(tt.ctx); got != tt.want {
				t.Errorf("From = %q, want %q", got, tt.want)
			}
		})
	}
}
