package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/internal/pgtest"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestClassifySchemaErrors runs statements that fail the ways a database
// without this version's schema fails, on a real server, and checks that
// classify calls them a schema error (and so unavailable), while a
// statement that is simply wrong stays an unclassified error: a 500 for
// a bug, not a 503 that hides it.
func TestClassifySchemaErrors(t *testing.T) {
	db := pgtest.Open(t, pgtest.New(t))
	for _, tc := range []struct {
		sqlstate, stmt string
		schema         bool
	}{
		{"42P01", "SELECT id FROM users", true},
		{"42703", "SELECT no_such_column FROM pg_class", true},
		{"3F000", "CREATE TABLE no_such_schema.users (id int)", true},
		{"22012", "SELECT 1/0", false},
		{"42601", "SELEC 1", false},
	} {
		t.Run(tc.sqlstate, func(t *testing.T) {
			_, err := db.ExecContext(context.Background(), tc.stmt)
			if err == nil {
				t.Fatalf("%s succeeded", tc.stmt)
			}
			got := store.Classify(err)
			if errors.Is(got, user.ErrSchema) != tc.schema || errors.Is(got, user.ErrUnavailable) != tc.schema {
				t.Fatalf("classify(%v) = %v: ErrSchema %v, ErrUnavailable %v; want both %v",
					err, got, errors.Is(got, user.ErrSchema), errors.Is(got, user.ErrUnavailable), tc.schema)
			}
			// The driver's error stays in the chain for the log.
			var pgErr pgdriver.Error
			if !errors.As(got, &pgErr) || pgErr.Field('C') != tc.sqlstate {
				t.Fatalf("classify(%v) = %v lost the driver's error", err, got)
			}
		})
	}
}
