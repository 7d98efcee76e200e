// Package reliability holds black-box tests of the whole service: hostile
// input, database faults, rolling restarts and concurrent writes. It has
// no code of its own; the tests drive the composed app or the real binary
// over HTTP and check the database directly. The slow ones are behind the
// build tag "slow" and named TestSlow…; `.ci/slow` runs them.
package reliability
