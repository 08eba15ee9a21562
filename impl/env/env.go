package env

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Clock tells the time and runs functions later.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc arranges for f to run once d has elapsed. In production f
	// runs on a goroutine of its own; in the simulator, on the simulator's
	// only thread. f must not block.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the function from running; it reports whether it did.
	Stop() bool
}

// Rand is a source of randomness. A seeded Rand replays the same sequence.
type Rand interface {
	Uint64() uint64
	IntN(n int) int
	Float64() float64
	// Read fills p, so that a Rand can stand in for crypto/rand.Reader in
	// code that takes an io.Reader for its randomness.
	Read(p []byte) (int, error)
}

// FS is the file system Pebble and every store use: vfs.Default in
// production, a crashable in-memory FS in tests and in the simulator.
type FS = vfs.FS

// Network opens connections.
type Network interface {
	Listen(network, address string) (net.Listener, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

// Env bundles the four doors.
type Env struct {
	Clock   Clock
	Rand    Rand
	FS      FS
	Network Network
}

// Real returns the production environment: wall clock, a random source
// seeded from the operating system, the disk and real sockets.
func Real() Env {
	return Env{Clock: RealClock{}, Rand: NewLockedRand(SystemSeed()), FS: vfs.Default, Network: RealNetwork{}}
}

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc implements Clock.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// SystemSeed returns a seed from the operating system's random source.
func SystemSeed() uint64 {
	var b [8]byte
	_, _ = crand.Read(b[:]) // never fails on supported platforms
	return binary.LittleEndian.Uint64(b[:])
}

// SeededRand is a deterministic Rand (PCG). It is not safe for concurrent
// use; the simulator owns one and derives every choice from it.
type SeededRand struct {
	*rand.Rand
}

// NewRand returns a SeededRand for seed.
func NewRand(seed uint64) *SeededRand {
	return &SeededRand{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Read implements Rand.
func (r *SeededRand) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.Uint64())
		copy(p[i:], b[:])
	}
	return len(p), nil
}

// LockedRand is a SeededRand safe for concurrent use, for production.
type LockedRand struct {
	mu sync.Mutex
	r  *SeededRand
}

// NewLockedRand returns a LockedRand for seed.
func NewLockedRand(seed uint64) *LockedRand { return &LockedRand{r: NewRand(seed)} }

// Uint64 implements Rand.
func (l *LockedRand) Uint64() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.r.Uint64() }

// IntN implements Rand.
func (l *LockedRand) IntN(n int) int { l.mu.Lock(); defer l.mu.Unlock(); return l.r.IntN(n) }

// Float64 implements Rand.
func (l *LockedRand) Float64() float64 { l.mu.Lock(); defer l.mu.Unlock(); return l.r.Float64() }

// Read implements Rand.
func (l *LockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// RealNetwork opens real sockets.
type RealNetwork struct{}

// Listen implements Network.
func (RealNetwork) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

// Dial implements Network.
func (RealNetwork) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}
