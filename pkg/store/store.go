package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/pkg/user"
)

// Unique indexes, as created by the migrations, and the field each guards.
var uniqueFields = map[string]string{
	"users_username_lower_key": "username",
	"users_email_lower_key":    "email",
}

// Store reads and writes users.
//
// Its statements go to database/sql with $n parameters, not through bun's
// formatter: bun writes the values into the SQL text, so PostgreSQL would
// parse and plan every statement anew, and Open's connections prepare a
// statement sent with parameters once and reuse it (docs/performance.md:
// half the CPU per Get and per Create, on both sides). bun still sees
// every statement: the hook, if any, gets the same events bun's own
// queries give it, so bunotel's spans cover them.
type Store struct {
	db      *bun.DB
	timeout time.Duration
	hook    bun.QueryHook
	// turns holds one token per connection the pool may open. A call
	// takes one before it asks database/sql for a connection, so the pool
	// never has callers waiting: database/sql hands a freed connection to
	// a waiter picked at random, so under a queue (32 requests on 10
	// connections) a request could lose every draw until its timeout
	// while later ones were served. A channel's blocked senders go first
	// come, first served. Nil when the pool is unbounded.
	turns chan struct{}
	keys  Idempotency
	// The batches of Create and CreateForEvent (see batcher), shared by
	// the copies WithQueryHook and WithIdempotency make: they use the
	// same pool.
	creates *batcher[user.New, user.User]
	events  *batcher[eventCreate, EventReply]
}

// WithQueryHook returns a Store whose statements are reported to hook,
// as bun.DB.WithQueryHook does for bun's own.
func (s *Store) WithQueryHook(hook bun.QueryHook) *Store {
	c := *s
	c.hook = hook
	return &c
}

// observe reports query to the hook before it runs; call the returned
// function with its outcome. Without a hook it costs nothing.
func (s *Store) observe(ctx context.Context, query string) (context.Context, func(error)) {
	if s.hook == nil {
		return ctx, func(error) {}
	}
	ev := &bun.QueryEvent{DB: s.db, Query: query, QueryTemplate: query, StartTime: time.Now()}
	ctx = s.hook.BeforeQuery(ctx, ev)
	return ctx, func(err error) {
		ev.Err = err
		s.hook.AfterQuery(ctx, ev)
	}
}

// New returns a Store over db whose calls wait at most timeout for the
// database, queueing for a connection included: List while it gets its
// connection, the others for the whole call. Pass at most the
// QueryTimeout that Open gave the driver (the app passes the sooner of it
// and the request timeout). The driver's read timeout restarts with every
// read, so it notices a database gone silent without ever cutting a
// stream that keeps coming, but it does not count the wait for a pooled
// connection: with the database silent, requests queued behind the stuck
// ones waited a multiple of it. A timeout of 0 adds no bound. Calls queue
// for db's connections in the order they arrive (see Store.turns).
func New(db *bun.DB, timeout time.Duration) *Store {
	s := &Store{db: db, timeout: timeout, keys: Idempotency{TTL: 24 * time.Hour, Wait: 2 * time.Second}}
	s.creates = &batcher[user.New, user.User]{what: "insert user", one: createOne, many: createMany}
	s.events = &batcher[eventCreate, EventReply]{what: "create user for event", one: createForEventOne, many: createForEvents}
	if n := db.DB.Stats().MaxOpenConnections; n > 0 {
		s.turns = make(chan struct{}, n)
	}
	return s
}

// call is the context a store call's statements run under: the caller's
// values and a deadline, the sooner of the caller's and the store's
// timeout, but no cancellation. pgdriver (v1.2.18) honours a context only
// through its deadline, which it puts on the socket for each write and
// each answer; it neither watches Done nor cancels a running statement.
// database/sql, given a context that can be done, starts a goroutine per
// query to watch it (Rows.awaitDone), and that goroutine and its wake-ups
// cost more than the rest of database/sql's work on a point query
// (docs/performance.md). A caller that goes away mid-statement no
// longer has database/sql close the rows early; pgdriver never stopped
// the statement for it, and the deadline still ends it.
type call struct {
	context.Context // context.WithoutCancel of the caller's
	deadline        time.Time
}

func (c call) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// begin takes the caller's turn and a pooled connection, waiting until
// the call's deadline at most, or until ctx is done, and returns the
// connection and the context for its statements. end gives both back.
func (s *Store) begin(ctx context.Context) (*sql.Conn, context.Context, error) {
	return s.beginBy(ctx, s.deadline(ctx))
}

// deadline is when a call made now must end: the store's timeout from
// now, or ctx's deadline if sooner. Zero: never.
func (s *Store) deadline(ctx context.Context) time.Time {
	var d time.Time
	if s.timeout > 0 {
		d = time.Now().Add(s.timeout)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	return d
}

// beginBy is begin for a call that must end by deadline (zero: never),
// which was set when it arrived.
//
// The wait for a turn and for the connection ends at the deadline or
// with ctx, even for a call that finds a turn free: holding a turn does
// not keep database/sql from making it wait. Its background opener dials
// for callers that gave up waiting, each dial holding a place in the pool
// with no deadline but the driver's read timeout, and a wait under a
// context that cannot be done ends only with such a dial
// (TestSlowSilentDatabase caught creates answering 503 after 8 s, twice
// the query timeout, docs/performance.md).
//
// A call whose deadline has passed fails here: its statement would time
// out at once and cost the connection (check marks it broken).
func (s *Store) beginBy(ctx context.Context, deadline time.Time) (*sql.Conn, context.Context, error) {
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return nil, nil, fmt.Errorf("wait for a connection: %w", classify(context.DeadlineExceeded))
	}
	c := call{Context: context.WithoutCancel(ctx), deadline: deadline}
	took := s.take()
	if !deadline.IsZero() {
		// With a turn, the wait is database/sql's alone: under a context
		// the caller's going away does not end, which spares the timer's
		// registration with the caller's.
		parent := ctx
		if took {
			parent = c.Context
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(parent, deadline)
		defer cancel()
	}
	if !took {
		if err := s.wait(ctx); err != nil {
			return nil, nil, fmt.Errorf("wait for a connection: %w", classify(err))
		}
	}
	conn, err := s.db.DB.Conn(ctx)
	if err != nil {
		s.done()
		return nil, nil, fmt.Errorf("get a connection: %w", classify(err))
	}
	return conn, c, nil
}

// end gives back the connection and the turn begin took.
func (s *Store) end(conn *sql.Conn) {
	_ = conn.Close()
	s.done()
}

// take takes the caller's turn if one is free. When calls are queued
// none is: a turn given back goes to the first of them.
func (s *Store) take() bool {
	if s.turns == nil {
		return true
	}
	select {
	case s.turns <- struct{}{}:
		return true
	default:
		return false
	}
}

// wait waits for the caller's turn, first come, first served.
func (s *Store) wait(ctx context.Context) error {
	select {
	case s.turns <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// done gives back the turn take or wait took.
func (s *Store) done() {
	if s.turns != nil {
		<-s.turns
	}
}

// Create inserts u and returns the stored user. A username or email that
// is taken in any letter case gives a *user.TakenError; the unique indexes
// decide, so concurrent creates cannot both succeed. Creates that arrive
// while another is in flight share one statement (see batcher); each
// gets its own outcome, as if it had been sent alone.
func (s *Store) Create(ctx context.Context, u user.New) (user.User, error) {
	return s.creates.do(ctx, s, u)
}

// createOne is Create alone, on conn.
func createOne(ctx context.Context, conn *sql.Conn, p *pending[user.New, user.User]) {
	out := user.User{Username: p.in.Username, Email: p.in.Email}
	ctx, done := p.s.observe(ctx, insertUser)
	err := conn.QueryRowContext(ctx, insertUser, p.in.Username, p.in.Email).Scan(&out.ID, &out.CreatedAt)
	done(err)
	if err != nil {
		p.err = fmt.Errorf("insert user: %w", classify(err))
		return
	}
	out.CreatedAt = out.CreatedAt.UTC()
	p.out = out
}

// createMany is the Creates of batch in one statement. Each member finds
// its row by its username: the unique index makes it one row's.
func createMany(ctx context.Context, conn *sql.Conn, batch []*pending[user.New, user.User], member func(*pending[user.New, user.User]) context.Context) (err error) {
	names, emails := make([]string, len(batch)), make([]string, len(batch))
	for i, p := range batch {
		names[i], emails[i] = p.in.Username, p.in.Email
	}
	done := observeAll(insertUsers, batch, member)
	defer func() { done(err) }()
	rows, err := conn.QueryContext(ctx, insertUsers, arrayLiteral(names), arrayLiteral(emails))
	if err != nil {
		return err
	}
	return gather(rows, batch, func(rows *sql.Rows) (int, user.User, error) {
		var u user.User
		if err := rows.Scan(&u.ID, &u.Username, &u.CreatedAt); err != nil {
			return 0, u, err
		}
		i := slices.IndexFunc(batch, func(p *pending[user.New, user.User]) bool { return p.in.Username == u.Username })
		if i >= 0 {
			u.Email, u.CreatedAt = batch[i].in.Email, u.CreatedAt.UTC()
		}
		return i, u, nil
	})
}

// The statements on users. The list's id order comes from the primary
// key's index: an index scan whose first row comes at once, no sort.
// insertUsers is a batch's: unnest keeps the arrays' order, and its
// arrays are text[] literals (arrayLiteral).
const (
	insertUser     = "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id, created_at"
	insertUsers    = "INSERT INTO users (username, email) SELECT * FROM unnest($1::text[], $2::text[]) RETURNING id, username, created_at"
	selectUser     = "SELECT id, username, email, created_at FROM users WHERE id = $1"
	listUsers      = "SELECT id, username, email, created_at FROM users WHERE id > $1 ORDER BY id"
	listUsersLimit = listUsers + " LIMIT $2"
)

// Get returns the user with id, or user.ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (user.User, error) {
	conn, ctx, err := s.begin(ctx)
	if err != nil {
		return user.User{}, fmt.Errorf("get user %d: %w", id, err)
	}
	defer s.end(conn)
	var u user.User
	ctx, done := s.observe(ctx, selectUser)
	err = conn.QueryRowContext(ctx, selectUser, id).Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt)
	done(err)
	if err != nil {
		return user.User{}, fmt.Errorf("get user %d: %w", id, classify(err))
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// List calls fn for each user with an id above after, in id order, at most
// limit users (no limit when limit <= 0). Rows are read one at a time from
// the database cursor, so memory does not grow with the table. fn's error
// stops the walk and is returned as is.
func (s *Store) List(ctx context.Context, after int64, limit int, fn func(*user.User) error) error {
	q, args := listUsers, []any{after}
	if limit > 0 {
		q, args = listUsersLimit, append(args, limit)
	}
	// Only getting a connection is bounded by the store's timeout: the
	// statement's context is also its rows', and its deadline would cut a
	// long stream. The driver's read timeout bounds the wait for the first
	// row and for each next one; the request's deadline bounds the whole.
	conn, _, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	defer s.end(conn)
	ctx, done := s.observe(ctx, q)
	rows, err := conn.QueryContext(ctx, q, args...)
	// The span covers the statement's answer, not the stream: that is the
	// HTTP span's, and its time is mostly the client's.
	done(err)
	if err != nil {
		return fmt.Errorf("list users: %w", classify(err))
	}
	defer rows.Close()
	var u user.User
	for rows.Next() {
		// Plain Scan into one reused value: no per-row reflection.
		if err := rows.Scan(&u.ID, &u.Username, &u.Email, &u.CreatedAt); err != nil {
			return fmt.Errorf("list users: %w", classify(err))
		}
		u.CreatedAt = u.CreatedAt.UTC()
		if err := fn(&u); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list users: %w", classify(err))
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	conn, ctx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer s.end(conn)
	if err := conn.PingContext(ctx); err != nil {
		return fmt.Errorf("ping: %w", classify(err))
	}
	return nil
}

// classify turns driver errors into the domain's errors (pkg/user). Anything that is
// not an error reported by PostgreSQL about the statement itself (network
// errors, timeouts, a server shutting down) means the database is not
// usable right now. A statement naming a table, column or schema that
// does not exist means the schema is behind this version's queries.
func classify(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return user.ErrNotFound
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		code := pgErr.Field('C')
		switch {
		case code == "23505":
			if f, ok := uniqueFields[pgErr.Field('n')]; ok {
				return &user.TakenError{Field: f}
			}
			return err
		case code == "0A000": // a prepared plan a migration made stale, where conn could not prepare it again
			return fmt.Errorf("%w: %w", user.ErrUnavailable, err)
		case code == "42P01", // undefined_table
			code == "42703", // undefined_column
			code == "3F000": // invalid_schema_name
			return fmt.Errorf("%w: %w", user.ErrSchema, err)
		case strings.HasPrefix(code, "08"), // connection exception
			strings.HasPrefix(code, "53"),                     // insufficient resources
			code == "57P01", code == "57P02", code == "57P03", // shutting down, starting up
			code == "57014",                  // statement timeout or cancel
			code == "40001", code == "40P01": // serialization failure, deadlock: retry
			return fmt.Errorf("%w: %w", user.ErrUnavailable, err)
		}
		return err
	}
	return fmt.Errorf("%w: %w", user.ErrUnavailable, err)
}
