// Package store keeps users in PostgreSQL through bun over pgdriver.
//
// Every query is SQL text with $n parameters sent through database/sql;
// none uses bun's query builder or its formatter. On the request paths the
// builder allocated a 4 kB query buffer and walked the model by reflection
// per query, and the formatter writes the values into the text, so each
// statement was parsed and planned anew (docs/performance.md). Open's
// connections prepare each statement once and reuse it, and discard
// themselves after a failure that could leave a late answer behind (see
// conn). BenchmarkGet and BenchmarkCreate in this package measure the
// variants.
//
// Users come back with CreatedAt in UTC whatever the session's time zone,
// so their JSON always says created_at in UTC, the same way.
package store

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Options say how Open reaches the database.
type Options struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// TLS encrypts the connection with this configuration; nil sends it
	// in plain text.
	TLS *tls.Config
	// MaxConns is the pool's size.
	MaxConns int
	// DialTimeout bounds connecting, so requests fail fast while the
	// database is down.
	DialTimeout time.Duration
	// QueryTimeout bounds how long the database may stay silent: for a
	// statement's answer, and for each further row of a stream.
	QueryTimeout time.Duration
	// Setup, if set, is a statement each new connection runs before the
	// pool hands it out.
	Setup string
	// Prepare makes each connection prepare the statements sent with
	// parameters on first use and reuse them. Off, each is sent as text
	// and planned every time: what a pooler that does not track prepared
	// statements (PgBouncer before 1.21 in transaction mode) needs.
	Prepare bool
}

// Open returns a bun.DB for o, its connections named appName in
// pg_stat_activity. It does not connect: the pool dials on first use, so
// the process can start (and report not-ready) while the database is
// still down.
func Open(o Options, appName string) *bun.DB {
	opts := []pgdriver.Option{
		pgdriver.WithAddr(net.JoinHostPort(o.Host, strconv.Itoa(o.Port))),
		pgdriver.WithUser(o.User),
		pgdriver.WithPassword(o.Password),
		pgdriver.WithDatabase(o.Database),
		pgdriver.WithApplicationName(appName),
		pgdriver.WithDialTimeout(o.DialTimeout),
		// pgdriver (v1.2.18) sets the socket's read deadline to now plus
		// this (or the context's deadline, if sooner) when a statement
		// starts waiting for its answer, and again, without the context,
		// at every Rows.Next. So it bounds how long the database may stay
		// silent, not how long a streamed list may take, and not the time
		// spent between rows writing to a slow client.
		pgdriver.WithReadTimeout(o.QueryTimeout),
		pgdriver.WithWriteTimeout(o.QueryTimeout),
	}
	if o.TLS != nil {
		opts = append(opts, pgdriver.WithTLSConfig(o.TLS))
	} else {
		// pgdriver tries TLS unless told otherwise.
		opts = append(opts, pgdriver.WithInsecure(true))
	}
	var c driver.Connector = connector{Connector: pgdriver.NewConnector(opts...), prepare: o.Prepare}
	if o.Setup != "" {
		c = setupConnector{Connector: c, setup: o.Setup}
	}
	sqldb := sql.OpenDB(c)
	sqldb.SetMaxOpenConns(o.MaxConns)
	sqldb.SetMaxIdleConns(o.MaxConns)
	// Recycle connections so a failover or a PgBouncer restart is picked up.
	sqldb.SetConnMaxLifetime(30 * time.Minute)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return bun.NewDB(sqldb, pgdialect.New())
}

// setupConnector runs a statement on each connection it makes. pgdriver
// has no hook for that: its connection parameters are SET commands, which
// fail outright on a server that lacks the parameter.
type setupConnector struct {
	driver.Connector
	setup string
}

func (c setupConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.(driver.ExecerContext).ExecContext(ctx, c.setup, nil); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("set up connection: %w", err)
	}
	return conn, nil
}
