package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/example/users/pkg/user"
)

// EventKey identifies a CloudEvent: CloudEvents makes source and id
// unique together, and a redelivery carries the same pair.
type EventKey struct {
	Source string
	ID     string
}

// EventReply is what an event that created a user is answered with, the
// first time and on every redelivery.
type EventReply struct {
	UserID int64     // the created user
	ID     string    // the reply event's id
	Time   time.Time // when the event was processed
	Data   []byte    // the user as the API showed it when it was created
	// Duplicate is true when the event had been processed before and this
	// call created nothing.
	Duplicate bool
}

// CreateForEvent creates user n on behalf of the event key, exactly once:
// it returns the reply for key if the event was processed before, and
// otherwise creates the user and records the event in one statement.
// Events that arrive while another is being created share one statement
// (see batcher); each gets its own outcome, as if it had been sent alone.
//
// The store's timeout bounds the call: its statements answer at once,
// unless a concurrent delivery of the same event holds a key it needs,
// and that one is bounded the same way.
func (s *Store) CreateForEvent(ctx context.Context, key EventKey, n user.New) (EventReply, error) {
	return s.events.do(ctx, s, eventCreate{key, n})
}

// eventCreate is what CreateForEvent is asked.
type eventCreate struct {
	key EventKey
	n   user.New
}

// createForEventOne is CreateForEvent alone, on conn.
func createForEventOne(ctx context.Context, conn *sql.Conn, p *pending[eventCreate, EventReply]) {
	p.out, p.err = p.s.createForEvent(ctx, conn, p.in.key, p.in.n)
}

// createForEvents is the CreateForEvents of batch in one statement. It
// fails on a unique index if any member's event was processed before or
// its name is taken, and then each member runs alone. Each finds its row
// by its event's key.
func createForEvents(ctx context.Context, conn *sql.Conn, batch []*pending[eventCreate, EventReply], member func(*pending[eventCreate, EventReply]) context.Context) (err error) {
	cols := [4][]string{}
	for i := range cols {
		cols[i] = make([]string, len(batch))
	}
	for i, p := range batch {
		cols[0][i], cols[1][i], cols[2][i], cols[3][i] = p.in.key.Source, p.in.key.ID, p.in.n.Username, p.in.n.Email
	}
	done := observeAll(createForEventsQuery, batch, member)
	defer func() { done(err) }()
	rows, err := conn.QueryContext(ctx, createForEventsQuery,
		arrayLiteral(cols[0]), arrayLiteral(cols[1]), arrayLiteral(cols[2]), arrayLiteral(cols[3]))
	if err != nil {
		return err
	}
	return gather(rows, batch, func(rows *sql.Rows) (int, EventReply, error) {
		var key EventKey
		var rep EventReply
		var u user.User
		if err := rows.Scan(&key.Source, &key.ID, &rep.ID, &rep.Time, &u.ID, &u.CreatedAt); err != nil {
			return 0, rep, err
		}
		i := slices.IndexFunc(batch, func(p *pending[eventCreate, EventReply]) bool { return p.in.key == key })
		if i >= 0 {
			u.Username, u.Email, u.CreatedAt = batch[i].in.n.Username, batch[i].in.n.Email, u.CreatedAt.UTC()
			rep.UserID = u.ID
			rep.Data, _ = json.Marshal(u) // a User always marshals
		}
		return i, rep, nil
	})
}

// The statements on processed_events. createForEvent inserts the user and
// the event's key in one statement, so both commit or neither, without a
// transaction's BEGIN and COMMIT round trips (docs/performance.md: the
// transaction of four statements cost 3× lean's insert).
const (
	createForEvent = `WITH u AS (INSERT INTO users (username, email) VALUES ($3, $4) RETURNING id, created_at),
	e AS (INSERT INTO processed_events (source, id, user_id) SELECT $1, $2, id FROM u RETURNING reply_id, processed_at)
	SELECT e.reply_id, e.processed_at, u.id, u.created_at FROM e, u`
	// createForEventsQuery is a batch's: the members' rows, each user
	// and its event's record joined by the username, which the unique
	// index makes one row's.
	createForEventsQuery = `WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS i (source, id, username, email)),
	u AS (INSERT INTO users (username, email) SELECT username, email FROM i RETURNING id, username, created_at),
	e AS (INSERT INTO processed_events (source, id, user_id) SELECT i.source, i.id, u.id FROM i JOIN u USING (username)
		RETURNING source, id, user_id, reply_id, processed_at)
	SELECT e.source, e.id, e.reply_id, e.processed_at, u.id, u.created_at FROM e JOIN u ON u.id = e.user_id`
	readReply = `SELECT e.reply_id, e.reply_data, e.processed_at, u.id, u.username, u.email, u.created_at
	FROM processed_events e LEFT JOIN users u ON u.id = e.user_id WHERE e.source = $1 AND e.id = $2`
)

// createForEvent is CreateForEvent without the store's timeout.
//
// A redelivery fails the statement on a unique index: on the username's or
// email's (it carries the same user, whom the first delivery created) or on
// the event's key (it carries another). A concurrent one waits on that
// index inside PostgreSQL until the first delivery's statement ends, and
// then fails the same way if it committed, or goes ahead if it did not.
// Either way the event's record then says whether this was a redelivery,
// answered with the reply of the first, or a name someone else holds.
func (s *Store) createForEvent(ctx context.Context, conn *sql.Conn, key EventKey, n user.New) (EventReply, error) {
	out := EventReply{}
	u := user.User{Username: n.Username, Email: n.Email}
	qctx, done := s.observe(ctx, createForEvent)
	err := conn.QueryRowContext(qctx, createForEvent, key.Source, key.ID, n.Username, n.Email).
		Scan(&out.ID, &out.Time, &u.ID, &u.CreatedAt)
	done(err)
	if err == nil {
		u.CreatedAt = u.CreatedAt.UTC()
		data, _ := json.Marshal(u) // a User always marshals
		out.UserID, out.Data = u.ID, data
		return out, nil
	}
	var pgErr pgdriver.Error
	if !errors.As(err, &pgErr) || pgErr.Field('C') != "23505" {
		return EventReply{}, fmt.Errorf("create user for event: %w", classify(err))
	}
	rep, rerr := s.storedReply(ctx, conn, key)
	if errors.Is(rerr, errNoEvent) {
		// Not a redelivery: the name is someone else's.
		return EventReply{}, fmt.Errorf("create user for event: %w", classify(err))
	}
	return rep, rerr
}

// errNoEvent says the event has no record.
var errNoEvent = errors.New("no such event")

// storedReply reads the reply to the delivery that processed key first.
// Its data is the user that delivery created, as stored then (rows
// written before the single-statement create) or as the user's row holds
// it, which no request changes.
func (s *Store) storedReply(ctx context.Context, conn *sql.Conn, key EventKey) (EventReply, error) {
	out := EventReply{Duplicate: true}
	var data sql.NullString
	var id sql.NullInt64
	var name, email sql.NullString
	var created sql.NullTime
	ctx, done := s.observe(ctx, readReply)
	err := conn.QueryRowContext(ctx, readReply, key.Source, key.ID).
		Scan(&out.ID, &data, &out.Time, &id, &name, &email, &created)
	done(err)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return EventReply{}, errNoEvent
	case err != nil:
		return EventReply{}, fmt.Errorf("read processed event: %w", classify(err))
	case data.Valid:
		out.UserID, out.Data = id.Int64, []byte(data.String)
	case id.Valid:
		u := user.User{ID: id.Int64, Username: name.String, Email: email.String, CreatedAt: created.Time.UTC()}
		out.UserID = u.ID
		out.Data, _ = json.Marshal(u)
	default:
		// The user was deleted by hand and no reply was stored; retrying
		// cannot help.
		return EventReply{}, fmt.Errorf("processed event %q from %q has no stored reply and its user is gone", key.ID, key.Source)
	}
	return out, nil
}
