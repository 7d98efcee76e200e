package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/uptrace/bun/driver/pgdriver"
)

// ErrSharedSession means a statement met another client's prepared
// statement on its session: a pooler in transaction mode that does not
// track them (PgBouncer before 1.21) is in between.
var ErrSharedSession = errors.New("the database session is shared with other clients (a pooler in transaction mode): " +
	"set POSTGRES_PREPARED_STATEMENTS=false")

// pgConn is what pgdriver's connections do; conn passes it all on.
type pgConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.Validator
	driver.SessionResetter
}

// conn is a pgdriver connection that prepares each statement sent with
// arguments on its first use and reuses it (when prepare is set), and
// that is discarded after any failure it cannot be sure left the
// protocol in step.
//
// The second part is what makes the first safe. pgdriver (v1.2.18) keeps
// a connection whose prepared statement timed out, and the statement's
// late answer is then read by the next query on it
// (TestGetAfterTimeoutReadsItsOwnAnswer). Any error that is not
// PostgreSQL's own answer to the statement (a timeout, a reset, a
// cancelled read) marks the connection broken, and database/sql closes it
// instead of reusing it: IsValid and ResetSession say so.
//
// database/sql uses a driver.Conn from one goroutine at a time, so the
// statement map needs no lock.
type conn struct {
	pg      pgConn
	prepare bool
	stmts   map[string]driver.Stmt
	broken  bool
	inTx    bool
}

// maxStmts bounds the statements a connection keeps: the store sends a
// handful of fixed texts, but nothing stops a caller sending others.
const maxStmts = 32

// connector makes conns over pgdriver's connector.
type connector struct {
	driver.Connector
	prepare bool
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pg, ok := cn.(pgConn)
	if !ok {
		_ = cn.Close()
		return nil, errors.New("store: the driver's connection lacks a method pgdriver's has")
	}
	return &conn{pg: pg, prepare: c.prepare, stmts: map[string]driver.Stmt{}}, nil
}

// check marks the connection broken unless err is nil or PostgreSQL's
// answer to the statement, after which the protocol is in step: a unique
// violation must not cost a reconnect.
func (c *conn) check(err error) error {
	if err == nil {
		return nil
	}
	var pgErr pgdriver.Error
	if !errors.As(err, &pgErr) {
		c.broken = true
	}
	return err
}

// stale reports whether err says a prepared statement no longer fits the
// schema: a migration changed a column's type ("cached plan must not
// change result type", 0A000) or the statement is gone (26000). The
// statement did not run.
func stale(err error) bool {
	var pgErr pgdriver.Error
	if !errors.As(err, &pgErr) {
		return false
	}
	code := pgErr.Field('C')
	return code == "0A000" || code == "26000"
}

// run runs query's prepared statement through do. A stale statement is
// prepared again and, outside a transaction (which the error has
// aborted), run once more: a migration costs no failed request.
func run[T any](ctx context.Context, c *conn, query string, do func(driver.Stmt) (T, error)) (T, error) {
	var zero T
	s, err := c.stmt(ctx, query)
	if err != nil {
		return zero, err
	}
	out, err := do(s)
	if stale(err) {
		delete(c.stmts, query)
		if !c.inTx {
			if s, err = c.stmt(ctx, query); err != nil {
				return zero, err
			}
			out, err = do(s)
		}
	}
	return out, c.check(err)
}

func (c *conn) stmt(ctx context.Context, query string) (driver.Stmt, error) {
	if s, ok := c.stmts[query]; ok {
		return s, nil
	}
	s, err := c.pg.PrepareContext(ctx, query)
	if err != nil {
		var pgErr pgdriver.Error
		if errors.As(err, &pgErr) && pgErr.Field('C') == "42P05" {
			// This connection's names are its own, so another client
			// prepared it on this session.
			err = fmt.Errorf("%w: %w", ErrSharedSession, err)
		}
		return nil, c.check(err)
	}
	c.stmts[query] = s
	return s, nil
}

// prepared reports whether query with args goes the prepared way: a
// statement without parameters gains nothing from it, and past maxStmts
// a new text is sent as text rather than prepared and left on the server.
func (c *conn) prepared(query string, args []driver.NamedValue) bool {
	if !c.prepare || len(args) == 0 {
		return false
	}
	_, ok := c.stmts[query]
	return ok || len(c.stmts) < maxStmts
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if !c.prepared(query, args) {
		r, err := c.pg.QueryContext(ctx, query, args)
		if err != nil {
			return nil, c.check(err)
		}
		return rows{r, c}, nil
	}
	r, err := run(ctx, c, query, func(s driver.Stmt) (driver.Rows, error) {
		return s.(driver.StmtQueryContext).QueryContext(ctx, args)
	})
	if err != nil {
		return nil, err
	}
	return rows{r, c}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if !c.prepared(query, args) {
		r, err := c.pg.ExecContext(ctx, query, args)
		return r, c.check(err)
	}
	return run(ctx, c, query, func(s driver.Stmt) (driver.Result, error) {
		return s.(driver.StmtExecContext).ExecContext(ctx, args)
	})
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext serves database/sql's own Prepare: a statement the
// caller manages, not one of the cached ones.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.pg.PrepareContext(ctx, query)
	return s, c.check(err)
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	t, err := c.pg.BeginTx(ctx, opts)
	if err != nil {
		return nil, c.check(err)
	}
	c.inTx = true
	return tx{t, c}, nil
}

func (c *conn) Ping(ctx context.Context) error { return c.check(c.pg.Ping(ctx)) }

func (c *conn) IsValid() bool { return !c.broken && c.pg.IsValid() }

func (c *conn) ResetSession(ctx context.Context) error {
	if c.broken {
		return driver.ErrBadConn
	}
	return c.pg.ResetSession(ctx)
}

// Close closes the connection; its prepared statements go with the
// session, so they are not closed one by one.
func (c *conn) Close() error { return c.pg.Close() }

// rows checks the errors of a result being read: a stream cut by a
// timeout leaves the rest of the answer on the connection.
type rows struct {
	driver.Rows
	c *conn
}

func (r rows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err == io.EOF {
		return err
	}
	return r.c.check(err)
}

func (r rows) Close() error { return r.c.check(r.Rows.Close()) }

// tx checks the errors of COMMIT and ROLLBACK.
type tx struct {
	driver.Tx
	c *conn
}

func (t tx) Commit() error {
	t.c.inTx = false
	return t.c.check(t.Tx.Commit())
}

func (t tx) Rollback() error {
	t.c.inTx = false
	return t.c.check(t.Tx.Rollback())
}
