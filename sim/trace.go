package sim

import (
	"fmt"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Kind classifies a trace event.
type Kind uint8

// Event kinds.
const (
	KindData     Kind = iota + 1 // bytes arrived at an endpoint
	KindOpen                     // a connection was established
	KindClose                    // an endpoint learned that its connection ended (FIN)
	KindReset                    // an endpoint learned that its connection was reset
	KindTimer                    // a process timer (env.Clock.AfterFunc) fired
	KindAction                   // a workload action
	KindFault                    // a fault was injected or healed
	KindDeadline                 // a runtime deadline (keep alive, connect, write) fired
	KindCrash                    // a process crashed
	KindRestart                  // a process started again
	KindHeld                     // bytes held by a partition
	KindRaft                     // a raft message or tick (the raft test)
	KindCommit                   // a group commit of the durable broker's store
)

var kindNames = [...]string{"?", "data", "open", "close", "reset", "timer", "action", "fault",
	"deadline", "crash", "restart", "held", "raft", "commit"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Trace hashes every event of a run (time, kind, host, connection, bytes)
// into one 64-bit value, so that two runs can be compared for identity,
// and keeps the last events for the failure report.
type Trace struct {
	hash  uint64
	count uint64
	ring  []traceEntry
	next  int
}

type traceEntry struct {
	at     time.Duration
	kind   Kind
	host   int
	conn   uint64
	n      int
	head   [24]byte
	nhead  int
	note   string
	filled bool
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// NewTrace returns a trace that keeps the last tail events.
func NewTrace(tail int) *Trace {
	if tail <= 0 {
		tail = 1
	}
	return &Trace{hash: fnvOffset, ring: make([]traceEntry, tail)}
}

func (t *Trace) mix64(v uint64) {
	h := t.hash
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	t.hash = h
}

// record adds an event; the simulation gives the time (the trace reads no
// clock of its own).
func (t *Trace) record(at time.Duration, kind Kind, host int, conn uint64, b []byte, note string) {
	t.count++
	t.mix64(uint64(at))
	t.mix64(uint64(kind)<<56 | uint64(uint32(host))<<24)
	t.mix64(conn)
	t.mix64(uint64(len(b)))
	h := t.hash
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	for i := 0; i < len(note); i++ {
		h ^= uint64(note[i])
		h *= fnvPrime
	}
	t.hash = h
	e := &t.ring[t.next]
	t.next = (t.next + 1) % len(t.ring)
	e.at, e.kind, e.host, e.conn, e.n, e.note, e.filled = at, kind, host, conn, len(b), note, true
	e.nhead = copy(e.head[:], b)
}

// Hash returns the hash of every event so far.
func (t *Trace) Hash() uint64 { return t.hash }

// Count returns the number of events recorded.
func (t *Trace) Count() uint64 { return t.count }

// Tail returns the last events, oldest first, one line each.
func (t *Trace) Tail() []string {
	var out []string
	for i := range t.ring {
		e := &t.ring[(t.next+i)%len(t.ring)]
		if !e.filled {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%12s %-8s host=%d", fmtDur(e.at), e.kind, e.host)
		if e.conn != 0 {
			fmt.Fprintf(&b, " conn=%d", e.conn)
		}
		if e.n > 0 {
			fmt.Fprintf(&b, " %dB", e.n)
			if e.kind == KindData {
				fmt.Fprintf(&b, " first=%s", packet.Type(e.head[0]>>4))
			}
		}
		if e.note != "" {
			b.WriteString(" " + e.note)
		}
		out = append(out, b.String())
	}
	return out
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.6fs", d.Seconds())
}
