package store

// Classify exposes classify to the external tests, which need pgtest (and
// pgtest imports this package).
var Classify = classify
