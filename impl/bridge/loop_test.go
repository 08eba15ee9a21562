package bridge

import (
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Two bridges form a ring through a second broker: A forwards local
// ring/# to the remote, B forwards the remote's ring/# back to the local
// broker. A message goes round once and stops at A, which it has already
// crossed.
func TestLoopRingOfTwoBridges(t *testing.T) {
	t.Parallel()
	local := startSkybridge(t)
	remote := newMosquitto(t, "")
	remote.start()
	a := testBridge("ring-a", local.url(), remote.url())
	a.Out = []Rule{{Filter: "ring/#"}}
	bb := testBridge("ring-b", local.url(), remote.url())
	bb.In = []Rule{{Filter: "ring/#"}}
	br := startBridge(t, vfs.NewMem(), a, bb)
	eventually(t, "all four connections", func() bool {
		for _, s := range br.Stats().Bridges {
			if !s.Local.Connected || !s.Remote.Connected {
				return false
			}
		}
		return true
	})
	lsub := newClient(t, local.url(), clientOpts{filters: []string{"ring/#"}})
	rsub := newClient(t, remote.url(), clientOpts{filters: []string{"ring/#"}})
	lsub.subscribed(t)
	rsub.subscribed(t)
	pub := newClient(t, local.url(), clientOpts{})
	pub.publish(t, "ring/x", "hello", 1, nil)
	eventually(t, "the message to come back to A and stop", func() bool {
		return br.Stats().Bridges[0].Out.Dropped.Loop == 1
	})
	// Forwarded counts acknowledgements, which may still be on their way
	// when the loop drop is seen: wait for them and for empty queues.
	eventually(t, "the ring to settle", func() bool {
		s := br.Stats().Bridges
		if s[0].Out.Forwarded == 0 || s[1].In.Forwarded == 0 {
			return false
		}
		for _, s := range s {
			if s.Out.Queued != 0 || s.In.Queued != 0 {
				return false
			}
		}
		return true
	})
	s := br.Stats().Bridges
	if d := s[0].Out.Forwarded; d != 1 {
		t.Fatalf("A forwarded %d, want 1", d)
	}
	if d := s[1].In.Forwarded; d != 1 {
		t.Fatalf("B forwarded %d, want 1", d)
	}
	eventually(t, "the remote copy", func() bool { return len(rsub.matching("ring/x")) >= 1 })
	if got := len(rsub.matching("ring/x")); got != 1 {
		t.Fatalf("remote subscriber got %d copies, want 1", got)
	}
	eventually(t, "the local copies", func() bool { return len(lsub.matching("ring/x")) == 2 })
	// The original and B's copy that crossed both bridges. They come from
	// two publishers (the test client and bridge B), so MQTT orders them
	// in no particular way (MQTT-4.6.0-6 orders the messages of one sender only):
	// under load the copy can overtake the original.
	var original, back []got
	for _, m := range lsub.matching("ring/x") {
		if len(m.user(markerKey)) == 0 {
			original = append(original, m)
		} else {
			back = append(back, m)
		}
	}
	if len(original) != 1 || len(back) != 1 {
		t.Fatalf("local copies: %d without markers, %d with, want 1 and 1", len(original), len(back))
	}
	if h := original[0].user(hopsKey); len(h) != 0 {
		t.Fatalf("hops on the original: %q", h)
	}
	if m := back[0].user(markerKey); !slices.Equal(m, []string{"ring-a", "ring-b"}) {
		t.Fatalf("markers on the copy that came back: %q", m)
	}
	if h := back[0].user(hopsKey); !slices.Equal(h, []string{"2"}) {
		t.Fatalf("hops on the copy that came back: %q", h)
	}
}

// One bridge mirrors the same topics both ways: No Local keeps each
// side's messages from coming back, so nothing is even dropped.
func TestMirrorNoEcho(t *testing.T) {
	t.Parallel()
	local := startSkybridge(t)
	remote := newMosquitto(t, "")
	remote.start()
	cfg := testBridge("mirror", local.url(), remote.url())
	cfg.Out = []Rule{{Filter: "m/#"}}
	cfg.In = []Rule{{Filter: "m/#"}}
	br := startBridge(t, vfs.NewMem(), cfg)
	lsub := newClient(t, local.url(), clientOpts{filters: []string{"m/#"}})
	rsub := newClient(t, remote.url(), clientOpts{filters: []string{"m/#"}})
	eventually(t, "bridge connected", func() bool {
		s := br.Stats().Bridges[0]
		return s.Local.Connected && s.Remote.Connected
	})
	lsub.subscribed(t)
	rsub.subscribed(t)
	lpub := newClient(t, local.url(), clientOpts{})
	rpub := newClient(t, remote.url(), clientOpts{})
	lpub.publish(t, "m/from-local", "l", 1, nil)
	rpub.publish(t, "m/from-remote", "r", 1, nil)
	eventually(t, "both messages on both sides", func() bool {
		return len(lsub.matching("m/from-")) == 2 && len(rsub.matching("m/from-")) == 2
	})
	// A sentinel published after them: once it is through, an echo of the
	// first two would have been too.
	lpub.publish(t, "m/sentinel", "s", 1, nil)
	eventually(t, "the sentinel", func() bool { return len(rsub.matching("m/sentinel")) == 1 })
	s := br.Stats().Bridges[0]
	if len(lsub.matching("m/from-")) != 2 || len(rsub.matching("m/from-")) != 2 {
		t.Fatalf("echo: local %d, remote %d, want 2 each", len(lsub.matching("m/from-")), len(rsub.matching("m/from-")))
	}
	if s.Out.Dropped.Loop != 0 || s.In.Dropped.Loop != 0 {
		t.Fatalf("loop drops %d/%d: No Local should have kept the echoes away", s.Out.Dropped.Loop, s.In.Dropped.Loop)
	}
}

// A ring through three brokers (Skybridge L1 → mosquitto M → Skybridge L2
// → L1) stops at the first bridge; with max_hops 2 on the last bridge it
// stops there instead.
func TestLoopRingOfThreeBrokers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		cMaxHops   int
		wantAtA    uint64 // loop drops at A
		wantHopsAt uint64 // hops drops at C
	}{
		{"marker", 0, 1, 0},
		{"max-hops", 2, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l1, l2 := startSkybridge(t), startSkybridge(t)
			m := newMosquitto(t, "")
			m.start()
			a := testBridge("a", l1.url(), m.url()) // L1 → M
			a.Out = []Rule{{Filter: "r/#"}}
			b := testBridge("b", l2.url(), m.url()) // M → L2
			b.In = []Rule{{Filter: "r/#"}}
			c := testBridge("c", l2.url(), l1.url()) // L2 → L1
			c.Out = []Rule{{Filter: "r/#"}}
			c.MaxHops = tc.cMaxHops
			br := startBridge(t, vfs.NewMem(), a, b, c)
			eventually(t, "all six connections", func() bool {
				for _, s := range br.Stats().Bridges {
					if !s.Local.Connected || !s.Remote.Connected {
						return false
					}
				}
				return true
			})
			// Connected means subscribed: one message is enough.
			pub := newClient(t, l1.url(), clientOpts{})
			pub.publish(t, "r/x", "round", 1, nil)
			eventually(t, "the message round the ring", func() bool {
				s := br.Stats().Bridges
				return s[0].Out.Dropped.Loop+s[2].Out.Dropped.Hops >= 1
			})
			eventually(t, "the ring to settle", func() bool {
				for _, s := range br.Stats().Bridges {
					if s.Out.Queued != 0 || s.In.Queued != 0 {
						return false
					}
				}
				return true
			})
			s := br.Stats().Bridges
			if s[0].Out.Dropped.Loop != tc.wantAtA || s[2].Out.Dropped.Hops != tc.wantHopsAt {
				t.Fatalf("A loop drops %d (want %d), C hops drops %d (want %d)", s[0].Out.Dropped.Loop, tc.wantAtA, s[2].Out.Dropped.Hops, tc.wantHopsAt)
			}
			// Once round at most, no further.
			for i, s := range s {
				want := uint64(1)
				if i == 2 && tc.wantHopsAt > 0 {
					want = 0
				}
				if got := s.Out.Forwarded + s.In.Forwarded; got != want {
					t.Fatalf("bridge %s forwarded %d, want %d", s.Name, got, want)
				}
			}
		})
	}
}
