package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"
)

// batcher gathers the calls that arrive while one is in flight and sends
// them as one statement when it ends: group commit. A statement and its
// commit cost PostgreSQL several times what one more row in it does
// (docs/performance.md, "Group commit": 105–114 µs of its CPU for a
// single-row INSERT, 36–42 µs per row in one of eight), so under
// concurrent creates it does a fraction of the work, and a call that
// arrives alone goes at once, by the statement it always had.
//
// No goroutine runs the batches. The call that finds none in flight
// leads: it runs its own; when that ends it hands the queue, oldest first,
// to the caller at its head, who runs it as the next batch, and so on.
type batcher[In, Out any] struct {
	what string // for errors: "insert user"
	// one runs p alone on conn, setting its out or err; many runs the
	// batch in one statement, setting every out, or returns the
	// statement's error and sets nothing. member is the context a
	// member's share is reported to the query hook under.
	one  func(ctx context.Context, conn *sql.Conn, p *pending[In, Out])
	many func(ctx context.Context, conn *sql.Conn, batch []*pending[In, Out], member func(*pending[In, Out]) context.Context) error

	mu      sync.Mutex
	running bool
	queue   []*pending[In, Out]
}

// maxBatch bounds the rows of one statement: its parameters stay a few
// kilobytes, and one member's conflict makes at most this many redo their
// statement alone.
const maxBatch = 64

// pending is one call waiting for, or running, its batch.
type pending[In, Out any] struct {
	s   *Store // the copy that was called, for its query hook
	ctx context.Context
	// deadline is when the call must end, set as it arrives: the time it
	// waits in the queue counts against the store's timeout.
	deadline time.Time
	in       In
	// wake carries one message: the outcome is in out and err, or, when
	// lead is set, the caller is to run lead, a batch it heads.
	wake chan struct{}
	lead []*pending[In, Out]
	out  Out
	err  error
}

// do runs in alone or in a batch and returns its own outcome, as if it
// had been sent alone.
func (b *batcher[In, Out]) do(ctx context.Context, s *Store, in In) (Out, error) {
	p := &pending[In, Out]{s: s, ctx: ctx, deadline: s.deadline(ctx), in: in}
	b.mu.Lock()
	if !b.running {
		b.running = true
		b.mu.Unlock()
		b.run(s, []*pending[In, Out]{p})
		return p.out, p.err
	}
	p.wake = make(chan struct{}, 1)
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	// The store's timeout is not ctx's: a timer ends the wait at the
	// call's deadline, so a statement in flight that never answers (a
	// silent database) cannot hold the queue past it.
	var expired <-chan time.Time
	if !p.deadline.IsZero() {
		t := time.NewTimer(time.Until(p.deadline))
		defer t.Stop()
		expired = t.C
	}
	var gone error
	select {
	case <-p.wake:
	case <-expired:
		gone = context.DeadlineExceeded
	case <-ctx.Done():
		gone = ctx.Err()
	}
	if gone != nil {
		if b.remove(p) {
			var zero Out
			return zero, fmt.Errorf("%s: wait for a connection: %w", b.what, classify(gone))
		}
		// A batch took p before it could leave: its outcome, or its lead,
		// is on the way, and the batch ends by its soonest member's
		// deadline, which is not later than p's.
		<-p.wake
	}
	if p.lead != nil {
		b.run(s, p.lead)
	}
	return p.out, p.err
}

// remove takes p out of the queue; false means a batch took it first.
func (b *batcher[In, Out]) remove(p *pending[In, Out]) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.queue, p); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		return true
	}
	return false
}

// run runs batch, whose first member is the caller, hands the queue
// gathered meanwhile to the caller at its head, and then tells the
// batch's other members their outcome.
//
// Members whose context ended or whose deadline passed while they waited
// are left out first and told at once, since the batch may run until a
// later member's deadline. If the caller is one of them, the batch goes
// to the next member, who runs it as its own, and the caller returns its
// error now (TestSlowSilentDatabase caught an event answering 503 a
// second after its deadline, as the caller of a batch still waiting for
// a connection).
func (b *batcher[In, Out]) run(s *Store, batch []*pending[In, Out]) {
	caller := batch[0]
	if len(batch) > 1 {
		if batch = b.drop(batch); len(batch) > 0 && batch[0] != caller {
			batch[0].lead = batch
			batch[0].wake <- struct{}{}
			return
		}
	}
	if len(batch) > 0 {
		b.exec(s, batch)
	}
	b.mu.Lock()
	k := min(len(b.queue), maxBatch)
	next := slices.Clone(b.queue[:k])
	b.queue = slices.Delete(b.queue, 0, k)
	b.running = k > 0
	b.mu.Unlock()
	if k > 0 {
		next[0].lead = next
		next[0].wake <- struct{}{}
	}
	for _, p := range batch {
		if p != caller {
			p.wake <- struct{}{}
		}
	}
}

// drop returns batch without the members whose context ended or whose
// deadline passed, setting each one's error and telling it, unless it is
// the caller (batch[0]), who reads its own.
func (b *batcher[In, Out]) drop(batch []*pending[In, Out]) []*pending[In, Out] {
	live := make([]*pending[In, Out], 0, len(batch))
	now := time.Now()
	for i, p := range batch {
		err := p.ctx.Err()
		if err == nil && !p.deadline.IsZero() && !now.Before(p.deadline) {
			err = context.DeadlineExceeded
		}
		if err == nil {
			live = append(live, p)
			continue
		}
		p.err = fmt.Errorf("%s: wait for a connection: %w", b.what, classify(err))
		if i > 0 {
			p.wake <- struct{}{}
		}
	}
	return live
}

// exec runs batch on one connection, setting each member's out or err.
func (b *batcher[In, Out]) exec(s *Store, batch []*pending[In, Out]) {
	if len(batch) == 1 {
		// Alone, the call is the caller's own, as any other store call.
		p := batch[0]
		conn, ctx, err := s.beginBy(p.ctx, p.deadline)
		if err != nil {
			p.err = fmt.Errorf("%s: %w", b.what, err)
			return
		}
		defer s.end(conn)
		b.one(ctx, conn, p)
		return
	}
	var deadline time.Time
	for _, p := range batch {
		if !p.deadline.IsZero() && (deadline.IsZero() || p.deadline.Before(deadline)) {
			deadline = p.deadline
		}
	}
	// The batch waits for a connection and runs for all its members: not
	// cut short when the oldest's caller goes away, but ended by the
	// soonest deadline.
	conn, ctx, err := s.beginBy(context.WithoutCancel(batch[0].ctx), deadline)
	if err != nil {
		for _, p := range batch {
			p.err = fmt.Errorf("%s: %w", b.what, err)
		}
		return
	}
	defer s.end(conn)
	// Each member's statement, or share of one, is reported to the hook
	// under its own context, so its trace has it.
	member := func(p *pending[In, Out]) context.Context {
		return call{Context: context.WithoutCancel(p.ctx), deadline: deadline}
	}
	err = b.many(ctx, conn, batch, member)
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		// PostgreSQL refused the statement for one member's row (a name
		// taken, an event delivered before): each gets its own answer,
		// alone.
		for _, p := range batch {
			b.one(member(p), conn, p)
		}
		return
	}
	if err != nil {
		for _, p := range batch {
			p.err = fmt.Errorf("%s: %w", b.what, classify(err))
		}
	}
}

// gather reads a batch statement's rows into its members' outcomes. row
// scans one and returns the member it answers, by index (-1: none), and
// that member's outcome. Unless every member is answered exactly once,
// gather sets nothing and returns an error.
func gather[In, Out any](rows *sql.Rows, batch []*pending[In, Out], row func(*sql.Rows) (int, Out, error)) error {
	defer rows.Close()
	out := make([]Out, len(batch))
	answered := make([]bool, len(batch))
	seen := 0
	for rows.Next() {
		i, o, err := row(rows)
		if err != nil {
			return err
		}
		if i < 0 || answered[i] {
			return errors.New("a row came back that no member asked for once")
		}
		out[i], answered[i] = o, true
		seen++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if seen != len(batch) {
		return fmt.Errorf("%d rows came back for %d members", seen, len(batch))
	}
	for i, p := range batch {
		p.out = out[i]
	}
	return nil
}

// observeAll reports query to the hook for each member of batch, under
// member's context; call the returned function with the outcome.
func observeAll[In, Out any](query string, batch []*pending[In, Out], member func(*pending[In, Out]) context.Context) func(error) {
	dones := make([]func(error), len(batch))
	for i, p := range batch {
		_, dones[i] = p.s.observe(member(p), query)
	}
	return func(err error) {
		for _, done := range dones {
			done(err)
		}
	}
}

// arrayLiteral writes ss as a PostgreSQL array literal of quoted
// elements: inside the quotes only '"' and the backslash are special, and
// a quoted NULL is the string.
func arrayLiteral(ss []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
