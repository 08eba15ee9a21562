package env

import (
	"slices"
	"testing"
	"time"
)

func TestManualClockRunsTimersInOrder(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	c := NewManualClock(start)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(1*time.Second, at("a"))
	stopped := c.AfterFunc(2*time.Second, at("never"))
	c.AfterFunc(1*time.Second, at("b")) // same deadline as a: scheduling order
	c.AfterFunc(2*time.Second, func() {
		got = append(got, "chain@"+c.Now().Sub(start).String())
		c.AfterFunc(0, at("chained"))
	})
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	if stopped.Stop() {
		t.Fatal("second Stop returned true")
	}
	c.Advance(2500 * time.Millisecond)
	want := []string{"a@1s", "b@1s", "chain@2s", "chained@2s"}
	if !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if c.Now() != start.Add(2500*time.Millisecond) {
		t.Fatalf("Now = %v", c.Now())
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", c.Pending())
	}
	c.Advance(time.Second)
	if got[len(got)-1] != "c@3s" {
		t.Fatalf("last = %v", got)
	}
}

func TestSeededRandReplays(t *testing.T) {
	t.Parallel()
	a, b := NewRand(7), NewRand(7)
	for range 100 {
		if a.Uint64() != b.Uint64() {
			t.Fatal("same seed, different sequence")
		}
	}
	var x, y [13]byte
	_, _ = a.Read(x[:])
	_, _ = b.Read(y[:])
	if x != y {
		t.Fatal("Read differs for the same seed")
	}
	if NewRand(8).Uint64() == NewRand(7).Uint64() {
		t.Fatal("different seeds gave the same first value")
	}
}

func TestRealEnvWorks(t *testing.T) {
	t.Parallel()
	e := Real()
	if e.Clock.Now().IsZero() {
		t.Fatal("zero time")
	}
	ln, err := e.Network.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	conn, err := e.Network.Dial(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fired := make(chan struct{})
	e.Clock.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc did not fire")
	}
	f, err := e.FS.Create(t.TempDir()+"/x", "")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
