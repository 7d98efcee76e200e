package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/example/users/internal/testenv"
	"github.com/example/users/pkg/store"
	"github.com/example/users/pkg/user"
)

// TestCallsQueueInOrder: with the pool's one connection taken, calls that
// arrive one after another get it in the order they arrived. database/sql
// alone hands a freed connection to a waiter picked at random (with 8
// waiters, in order once in 40320 runs), so one can lose every draw until
// its timeout while later arrivals are served.
func TestCallsQueueInOrder(t *testing.T) {
	db, cfg := testenv.DB(t)
	db.SetMaxOpenConns(1)
	s := store.New(db, cfg.QueryTimeout)
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
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Get(ctx, u.ID); err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		// Long enough for the waiter to be queued before the next comes.
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("waiters served in the order %v, want the order they came in", order)
		}
	}
}
