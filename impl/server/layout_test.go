package server

import (
	"testing"
	"unsafe"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/session"
)

// TestLayout bounds the sizes of an idle connection's three largest objects
// (64-bit only): each must fit the allocator's size class it was shrunk to
// (bench/README.md, issue 18), so that a new field that pushes one into the
// next class is a decision, not an accident.
func TestLayout(t *testing.T) {
	t.Parallel()
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"server connection", unsafe.Sizeof(connection{}), 256},
		{"broker.Conn", unsafe.Sizeof(broker.Conn{}), 240},
		{"session.Session", unsafe.Sizeof(session.Session{}), 256},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d B, want at most %d (its size class)", c.name, c.size, c.max)
		}
	}
}
