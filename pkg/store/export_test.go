package store

// Classify exposes classify to the external tests, which need pgtest (and
// pgtest imports this package).
var Classify = classify

// QueuedCreates is how many Creates wait for the batch in flight.
func QueuedCreates(s *Store) int {
	s.creates.mu.Lock()
	defer s.creates.mu.Unlock()
	return len(s.creates.queue)
}

// ArrayLiteral exposes arrayLiteral.
var ArrayLiteral = arrayLiteral

// QueuedEvents is how many CreateForEvents wait for the batch in flight.
func QueuedEvents(s *Store) int {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return len(s.events.queue)
}
