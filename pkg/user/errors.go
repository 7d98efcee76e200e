package user

import (
	"errors"
	"fmt"
	"strings"
)

// The errors a call on users can end in, whichever store answers it.
// pkg/store wraps the driver's errors into them, and each transport
// answers them through one table of its own (problem.From for the HTTP
// API, the events package for CloudEvents), so neither the domain nor the
// store knows a status code.
var (
	// ErrNotFound: no user has the id asked for.
	ErrNotFound = errors.New("user not found")
	// ErrUnavailable: the users cannot be read or written right now (the
	// database is unreachable, silent, shutting down or out of resources);
	// the same call may succeed later.
	ErrUnavailable = errors.New("database unavailable")
	// ErrSchema means the database answers but lacks a table, column or
	// schema the queries need: its migrations have not been applied. It
	// wraps ErrUnavailable, because the request is not at fault and will
	// succeed once `users migrate up` has run, so code that knows only
	// ErrUnavailable still answers it as unavailable rather than as a bug.
	ErrSchema = fmt.Errorf("%w: schema not migrated", ErrUnavailable)
	// ErrKeyReused: an idempotency key that created a user is sent again
	// with another new user.
	ErrKeyReused = errors.New("idempotency key was used for another new user")
	// ErrKeyInUse: the first request with an idempotency key is still
	// being processed; a retry later gets its answer.
	ErrKeyInUse = errors.New("a request with this idempotency key is still being processed")
)

// TakenError says which unique field of a new user another user already
// has, in any letter case.
type TakenError struct {
	Field string // "username" or "email"
}

func (e *TakenError) Error() string { return e.Field + " is already taken" }

// FieldError says what is wrong with one field of the input.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is returned for input that is not valid: a new user,
// or any other client input (query parameters) that names its fields.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}
