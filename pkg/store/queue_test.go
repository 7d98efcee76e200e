package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestCallsQueueInOrder: with the pool's one connection taken, calls that
// arrive one after another get it in the order they arrived. database/sql
// alone hands a freed connection to a waiter picked at random (with 8
// waiters, in order once in 40320 runs), so one can lose every draw until
// its timeout while later arrivals are served.
//
// The order is the one the statements ended in, which the query hook sees
// while the call still holds its turn (and the one connection), so the
// test does not depend on how the waiters' goroutines are scheduled after
// they return (it failed once that way: a waiter served second was
// recorded third).
func TestCallsQueueInOrder(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1)
	rec := &orderHook{}
	s := store.New(db, cfg.QueryTimeout).WithQueryHook(rec)
	ctx := context.Background()
	u, err := s.Create(ctx, user.New{Username: "first", Email: "first@example.com"})
	if err != nil {
		t.Fatal(err)
	}

	// A list that holds the connection until release is closed.
	release, holding := make(chan struct{}), make(chan struct{})
	stop := errors.New("stop")
	go func() {
		_ = s.List(ctx, 0, 0, func(*user.User) error {
			close(holding)
			<-release
			return stop
		})
	}()
	<-holding

	const waiters = 8
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Get(context.WithValue(ctx, waiterKey{}, i), u.ID); err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
		}()
		// Long enough for the waiter to be queued before the next comes.
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	order := rec.order()
	if len(order) != waiters {
		t.Fatalf("%d waiters' statements seen, want %d", len(order), waiters)
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("waiters served in the order %v, want the order they came in", order)
		}
	}
}

type waiterKey struct{}

// orderHook records the waiter of each statement as it ends.
type orderHook struct {
	mu   sync.Mutex
	seen []int
}

func (h *orderHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (h *orderHook) AfterQuery(ctx context.Context, _ *bun.QueryEvent) {
	if i, ok := ctx.Value(waiterKey{}).(int); ok {
		h.mu.Lock()
		h.seen = append(h.seen, i)
		h.mu.Unlock()
	}
}

func (h *orderHook) order() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.seen...)
}
