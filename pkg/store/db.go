// Package store keeps users in PostgreSQL through bun over pgdriver.
//
// Every query is SQL text with ? arguments, filled in by bun's formatter;
// none uses bun's query builder. On the request paths the builder
// allocated a 4 kB query buffer and walked the model by reflection per
// query (docs/performance.md), and with one style throughout the reader
// sees the very statement PostgreSQL runs. The queries are not prepared
// statements, though that would halve PostgreSQL's CPU per Get: pgdriver
// (v1.2.18) keeps a connection in the pool after a timeout on a prepared
// statement, and the next query on it reads the late answer to the old
// one. BenchmarkGet and BenchmarkCreate in this package measure the
// variants.
package store

import (
	"crypto/tls"
	"database/sql"
	"net"
	"strconv"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/pkg/config"
)

// Open returns a bun.DB for cfg. It does not connect: the pool dials on
// first use, so the process can start (and report not-ready) while the
// database is still down.
// Extra options (connection parameters, say) go after the ones from cfg.
func Open(cfg config.Database, appName string, extra ...pgdriver.Option) *bun.DB {
	opts := []pgdriver.Option{
		pgdriver.WithAddr(net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))),
		pgdriver.WithUser(cfg.User),
		pgdriver.WithPassword(cfg.Password),
		pgdriver.WithDatabase(cfg.Name),
		pgdriver.WithApplicationName(appName),
		pgdriver.WithDialTimeout(cfg.DialTimeout),
		// pgdriver (v1.2.18) sets the socket's read deadline to now plus
		// this (or the context's deadline, if sooner) when a statement
		// starts waiting for its answer, and again, without the context,
		// at every Rows.Next. So it bounds how long the database may stay
		// silent, not how long a streamed list may take, and not the time
		// spent between rows writing to a slow client.
		pgdriver.WithReadTimeout(cfg.QueryTimeout),
		pgdriver.WithWriteTimeout(cfg.QueryTimeout),
	}
	switch cfg.SSLMode {
	case config.SSLRequire:
		// Encrypted but unverified, as libpq's sslmode=require.
		opts = append(opts, pgdriver.WithTLSConfig(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})) //nolint:gosec // that is what require means
	case config.SSLVerifyFull:
		opts = append(opts, pgdriver.WithTLSConfig(&tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}))
	default:
		// pgdriver tries TLS unless told otherwise.
		opts = append(opts, pgdriver.WithInsecure(true))
	}
	opts = append(opts, extra...)
	sqldb := sql.OpenDB(pgdriver.NewConnector(opts...))
	sqldb.SetMaxOpenConns(cfg.MaxConns)
	sqldb.SetMaxIdleConns(cfg.MaxConns)
	// Recycle connections so a failover or a PgBouncer restart is picked up.
	sqldb.SetConnMaxLifetime(30 * time.Minute)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return bun.NewDB(sqldb, pgdialect.New())
}
