package store

// Classify exposes classify to the external tests, which need pgtest (and
// pgtest imports this package).
var Classify = classify

// QueuedCreates is how many Creates wait for the batch in flight.
func QueuedCreates(s *Store) int { return queued(s.creates) }

// QueuedEvents is how many CreateForEvents wait for the batch in flight.
func QueuedEvents(s *Store) int { return queued(s.events) }

func queued[In, Out any](b *batcher[In, Out]) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// ArrayLiteral exposes arrayLiteral.
var ArrayLiteral = arrayLiteral
