package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/pkg/user"
)

// Idempotency says how long CreateOnce keeps a key and how long a retry
// waits for a first request with its key that is still running.
type Idempotency struct {
	TTL  time.Duration
	Wait time.Duration
}

// WithIdempotency returns a Store whose CreateOnce uses o.
func (s *Store) WithIdempotency(o Idempotency) *Store {
	c := *s
	c.keys = o
	return &c
}

// The statements on idempotency_keys. keyLock's two-number advisory lock
// (0x75736b79, "usky", and the key's hash) lives in a space of its own,
// apart from the migrations' one-number lock; two keys that share a hash
// only wait for each other. It is a transaction's, so it holds through a
// pooler in transaction mode.
const (
	readKey = `SELECT k.fingerprint, u.id, u.username, u.email, u.created_at
	FROM idempotency_keys k JOIN users u ON u.id = k.user_id
	WHERE k.key = $1 AND k.created_at > now() - $2::float8 * interval '1 second'`
	keyWait   = `SELECT set_config('lock_timeout', $1, true)`
	keyLock   = `SELECT pg_advisory_xact_lock(1970498425, hashtext($1))`
	createKey = `WITH u AS (INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id, created_at),
	k AS (INSERT INTO idempotency_keys (key, fingerprint, user_id) SELECT $3, $4, id FROM u
		ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, user_id = EXCLUDED.user_id, created_at = now())
	SELECT id, created_at FROM u`
	deleteKeys = `DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys
	WHERE created_at <= now() - $1::float8 * interval '1 second' ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
)

// fingerprint identifies the new user asked for, whatever the JSON that
// asked for it looked like.
func fingerprint(n user.New) []byte {
	h := sha256.New()
	h.Write([]byte(n.Username))
	h.Write([]byte{0})
	h.Write([]byte(n.Email))
	return h.Sum(nil)
}

// CreateOnce creates n under the client's idempotency key: the first call
// with key creates the user and records key in the same statement; a
// later one with the same n returns that user and replayed true, and
// creates nothing. The same key with another n is user.ErrKeyReused. A
// call that finds the key's first request still running waits for it up
// to the Idempotency's Wait, then gives user.ErrKeyInUse. A key older than
// the TTL is as good as new. A create that fails (a taken name, say)
// records nothing, so its retry is answered afresh.
func (s *Store) CreateOnce(ctx context.Context, key string, n user.New) (u user.User, replayed bool, err error) {
	conn, ctx, err := s.begin(ctx)
	if err != nil {
		return user.User{}, false, fmt.Errorf("create user once: %w", err)
	}
	defer s.end(conn)
	fp := fingerprint(n)
	ttl := s.keys.TTL.Seconds()
	// Most retries find the key's user at once, without a transaction.
	if u, err := s.readKey(ctx, conn, key, ttl, fp); !errors.Is(err, errNoKey) {
		return u, err == nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return user.User{}, false, fmt.Errorf("create user once: %w", classify(err))
	}
	defer func() { _ = tx.Rollback() }()
	wait := strconv.FormatInt(max(s.keys.Wait.Milliseconds(), 1), 10) + "ms"
	if _, err := s.exec(ctx, tx, keyWait, wait); err != nil {
		return user.User{}, false, fmt.Errorf("create user once: %w", classify(err))
	}
	if _, err := s.exec(ctx, tx, keyLock, key); err != nil {
		var pgErr pgdriver.Error
		if errors.As(err, &pgErr) && pgErr.Field('C') == "55P03" { // lock_not_available
			return user.User{}, false, fmt.Errorf("create user once: %w", user.ErrKeyInUse)
		}
		return user.User{}, false, fmt.Errorf("create user once: %w", classify(err))
	}
	// The first request may have finished while this one waited.
	if u, err := s.readKey(ctx, tx, key, ttl, fp); !errors.Is(err, errNoKey) {
		return u, err == nil, err
	}
	u = user.User{Username: n.Username, Email: n.Email}
	qctx, done := s.observe(ctx, createKey)
	err = tx.QueryRowContext(qctx, createKey, n.Username, n.Email, key, fp).Scan(&u.ID, &u.CreatedAt)
	done(err)
	if err != nil {
		return user.User{}, false, fmt.Errorf("create user once: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return user.User{}, false, fmt.Errorf("create user once: commit: %w", classify(err))
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, false, nil
}

// errNoKey says the key has no live record.
var errNoKey = errors.New("no such idempotency key")

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// readKey returns the user key created, user.ErrKeyReused if it was
// created from another fingerprint, or errNoKey.
func (s *Store) readKey(ctx context.Context, q queryer, key string, ttl float64, fp []byte) (user.User, error) {
	var stored []byte
	var u user.User
	qctx, done := s.observe(ctx, readKey)
	err := q.QueryRowContext(qctx, readKey, key, ttl).Scan(&stored, &u.ID, &u.Username, &u.Email, &u.CreatedAt)
	done(err)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return user.User{}, errNoKey
	case err != nil:
		return user.User{}, fmt.Errorf("read idempotency key: %w", classify(err))
	case string(stored) != string(fp):
		return user.User{}, fmt.Errorf("create user once: %w", user.ErrKeyReused)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (s *Store) exec(ctx context.Context, q queryer, query string, args ...any) (sql.Result, error) {
	ctx, done := s.observe(ctx, query)
	r, err := q.ExecContext(ctx, query, args...)
	done(err)
	return r, err
}

// DeleteExpiredKeys deletes up to limit keys older than the TTL and
// returns how many it deleted. It takes its turn for a connection like a
// request, never waits on a row another call has locked (SKIP LOCKED),
// and deletes in batches, so it cannot hold requests up for long; keys
// past their TTL count as absent whether or not it has run.
func (s *Store) DeleteExpiredKeys(ctx context.Context, limit int) (int64, error) {
	conn, ctx, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	defer s.end(conn)
	r, err := s.exec(ctx, conn, deleteKeys, s.keys.TTL.Seconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", classify(err))
	}
	n, _ := r.RowsAffected()
	return n, nil
}
