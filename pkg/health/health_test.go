package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestCheckerCachesAndExpires(t *testing.T) {
	calls := 0
	var fail bool
	c := NewChecker(func(context.Context) error {
		calls++
		if fail {
			return errors.New("boom")
		}
		return nil
	}, time.Second, time.Second)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }

	for range 5 {
		if err := c.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d checks within the TTL, want 1", calls)
	}
	fail = true
	now = now.Add(1001 * time.Millisecond)
	err := c.Check(context.Background())
	var nr *NotReadyError
	if !errors.As(err, &nr) || nr.Reason() != "database unreachable" || calls != 2 {
		t.Fatalf("after expiry: %v (calls %d)", err, calls)
	}
}

func TestCheckerTimesOut(t *testing.T) {
	c := NewChecker(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, time.Second, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- c.Check(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Check did not honour its timeout")
	}
}

func TestConcurrentChecksShareOneCall(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	c := NewChecker(func(context.Context) error {
		mu.Lock()
		calls++
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return nil
	}, time.Second, time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Check(context.Background()) }()
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("%d database checks for 20 concurrent probes, want 1", calls)
	}
}

func TestDrain(t *testing.T) {
	c := NewChecker(func(context.Context) error { return nil }, time.Second, time.Second)
	c.Drain()
	var nr *NotReadyError
	if err := c.Check(context.Background()); !errors.As(err, &nr) || nr.Reason() != "shutting down" {
		t.Fatalf("err = %v", err)
	}
}
