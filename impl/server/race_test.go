//go:build race

package server

// raceEnabled: the race detector's instrumentation makes frames and
// allocations larger.
const raceEnabled = true
