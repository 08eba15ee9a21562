package bridge

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
)

// checkStream fails unless the messages are exactly the payloads want, in
// order, each on topicOf(i), at QoS 1 — repeats of earlier messages
// allowed (QoS 1 after a reconnection), gaps and reordering not.
func checkStream(t *testing.T, ms []got, want []string, topicOf func(i int) string) int {
	t.Helper()
	order, dups := distinct(ms)
	if diff := cmp.Diff(want, order); diff != "" {
		t.Fatalf("messages in order of first arrival (-want +got):\n%s", diff)
	}
	idx := map[string]int{}
	for i, p := range want {
		idx[p] = i
	}
	for _, m := range ms {
		i := idx[m.payload]
		if m.topic != topicOf(i) || m.qos != 1 {
			t.Fatalf("message %s: topic %q QoS %d, want %q QoS 1", m.payload, m.topic, m.qos, topicOf(i))
		}
	}
	return dups
}

// checkAfterRemoteKill checks what a persistent subscriber on a remote got
// (topics starting with prefix) when the remote was killed with SIGKILL
// while all (sent in order, all[k] on topicOf(k)) streamed through the
// bridge; acked is how many of them the remote had acknowledged and
// killedAt how many had reached the subscriber when it was killed. Every
// message the remote had not acknowledged must arrive, in order. The
// remote acknowledges a message before it saves it (mosquitto: every
// autosave_interval), so of those it acknowledged, the ones it had not
// delivered yet may be lost with it, and only those. It returns the
// repeats and the messages lost by the remote.
func checkAfterRemoteKill(t *testing.T, rsub *client, prefix string, all []string, acked, killedAt int, topicOf func(k int) string) (dups, lostByRemote int) {
	t.Helper()
	eventually(t, "every message the remote had not acknowledged at the remote subscriber", func() bool {
		order, _ := distinct(rsub.matching(prefix))
		have := map[string]bool{}
		for _, p := range order {
			have[p] = true
		}
		for _, p := range all[acked:] {
			if !have[p] {
				return false
			}
		}
		return true
	})
	order, _ := distinct(rsub.matching(prefix))
	have := map[string]bool{}
	for _, p := range order {
		have[p] = true
	}
	var want []string
	index := map[string]int{}
	for i, p := range all {
		switch {
		case have[p]:
			index[p] = i
			want = append(want, p)
		case i < acked:
			lostByRemote++ // acknowledged by the remote, lost in its SIGKILL
		}
	}
	dups = checkStream(t, rsub.matching(prefix), want, func(i int) string { return topicOf(index[want[i]]) })
	if window := max(0, acked-killedAt); lostByRemote > window {
		t.Fatalf("%d messages missing, more than the %d the remote acknowledged and had not delivered when killed", lostByRemote, window)
	}
	return dups, lostByRemote
}

// The remote is killed (SIGKILL) while messages stream through the bridge
// and restarted on the same port: every message published locally that the
// remote had not acknowledged when it died reaches a persistent subscriber
// on the remote, as sent and in order. mosquitto acknowledges a message
// before it saves it (every autosave_interval), so what it acknowledged in
// the last moments before the SIGKILL and had not yet passed on may be lost
// by mosquitto itself: those messages, and only those, may be missing (the
// test counts them; they are the remote's loss, not the bridge's).
func TestRemoteKilledMidStream(t *testing.T) {
	t.Parallel()
	const n = 500
	local := startSkybridge(t)
	remote := newMosquitto(t, "")
	remote.start()
	rsub := newClient(t, remote.url(), clientOpts{id: "remote-sub", filters: []string{"site-7/#"}, persistent: true})
	rsub.subscribed(t)
	// The subscriber's session must survive the SIGKILL: wait for
	// mosquitto's autosave.
	eventually(t, "mosquitto persistence file", remote.dbSaved)

	cfg := testBridge("kill", local.url(), remote.url())
	cfg.Out = []Rule{{Filter: "sensors/#", Prefix: "site-7/"}}
	b := startBridge(t, vfs.NewMem(), cfg)
	eventually(t, "bridge connected", func() bool {
		s := b.Stats().Bridges[0]
		return s.Local.Connected && s.Remote.Connected
	})

	pub := newClient(t, local.url(), clientOpts{})
	topicOf := func(i int) string { return fmt.Sprintf("sensors/%d/temp", i%4) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, p := range seqPayloads(0, n) {
			pub.publish(t, topicOf(i), p, 1, nil)
		}
	}()
	eventually(t, "a first part of the stream at the remote", func() bool { return len(rsub.matching("site-7/sensors/")) >= n/5 })
	remote.kill()
	killedAt := len(rsub.matching("site-7/sensors/"))
	wg.Wait() // everything is published locally (acknowledged by the local broker)
	eventually(t, "the bridge to notice", func() bool { return !b.Stats().Bridges[0].Remote.Connected })
	// The bridge forwards in order and mosquitto acknowledges in order:
	// the first acked messages are all it acknowledged before it died.
	acked := int(b.Stats().Bridges[0].Out.Forwarded)
	queued := b.Stats().Bridges[0].Out.Queued
	remote.start()
	eventually(t, "the queue to drain", func() bool { return b.Stats().Bridges[0].Out.Queued == 0 })
	dups, lostByRemote := checkAfterRemoteKill(t, rsub, "site-7/sensors/", seqPayloads(0, n), acked, killedAt,
		func(k int) string { return "site-7/" + topicOf(k) })
	s := b.Stats().Bridges[0]
	if s.Remote.Reconnects < 1 {
		t.Fatalf("remote reconnects = %d, want at least 1", s.Remote.Reconnects)
	}
	if s.Out.Dropped.Total() != 0 {
		t.Fatalf("drops: %+v", s.Out.Dropped)
	}
	t.Logf("killed after %d of %d had arrived (%d acknowledged by the remote); %d queued while the remote was down; %d repeats; %d lost by mosquitto's SIGKILL; remote reconnects %d",
		killedAt, n, acked, queued, dups, lostByRemote, s.Remote.Reconnects)
}

// The bridge stops with messages in its queue (the remote was never
// reachable) and a new bridge on the same directory sends them when the
// remote appears.
func TestBridgeRestartResumesQueue(t *testing.T) {
	t.Parallel()
	const n = 300
	local := startSkybridge(t)
	remote := newMosquitto(t, "") // not started yet: its port refuses connections
	fs := vfs.NewMem()
	cfg := testBridge("restart", local.url(), remote.url())
	cfg.Out = []Rule{{Filter: "data/#", Prefix: "site-7/"}}

	b1, err := New(Config{Bridges: []BridgeConfig{cfg}}, fs, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "local connection", func() bool { return b1.Stats().Bridges[0].Local.Connected })
	pub := newClient(t, local.url(), clientOpts{})
	for i, p := range seqPayloads(0, n) {
		pub.publish(t, fmt.Sprintf("data/%d", i%7), p, 1, nil)
	}
	eventually(t, "everything queued", func() bool { return b1.Stats().Bridges[0].Out.Queued == n })
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2, err := New(Config{Bridges: []BridgeConfig{cfg}}, fs, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	if q := b2.Stats().Bridges[0].Out.Queued; q != n {
		t.Fatalf("queued after reopening: %d, want %d", q, n)
	}
	remote.start()
	rsub := newClient(t, remote.url(), clientOpts{filters: []string{"site-7/#"}})
	rsub.subscribed(t)
	if err := b2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every message at the remote", func() bool {
		order, _ := distinct(rsub.matching("site-7/data/"))
		return len(order) >= n
	})
	checkStream(t, rsub.matching("site-7/data/"), seqPayloads(0, n), func(i int) string { return fmt.Sprintf("site-7/data/%d", i%7) })
	eventually(t, "the queue to drain", func() bool { return b2.Stats().Bridges[0].Out.Queued == 0 })
	// The counters are separate atomics, not a snapshot: a message leaves
	// the queue a moment before it is counted as forwarded.
	eventually(t, "every message counted as forwarded", func() bool { return b2.Stats().Bridges[0].Out.Forwarded >= n })
}

// A full queue drops by its policy and counts what it dropped.
func TestQueueBound(t *testing.T) {
	t.Parallel()
	const n, bound = 80, 50
	for _, tc := range []struct {
		policy string
		want   []string // what reaches the remote
	}{
		{DropOldest, seqPayloads(n-bound, n)},
		{RefuseNew, seqPayloads(0, bound)},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			local := startSkybridge(t)
			remote := newMosquitto(t, "")
			cfg := testBridge("bound", local.url(), remote.url())
			cfg.Out = []Rule{{Filter: "data/#"}}
			cfg.Queue.MaxMessages = bound
			cfg.Queue.DropPolicy = tc.policy
			fs := vfs.NewMem()
			b, err := New(Config{Bridges: []BridgeConfig{cfg}}, fs, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			eventually(t, "local connection", func() bool { return b.Stats().Bridges[0].Local.Connected })
			pub := newClient(t, local.url(), clientOpts{})
			for _, p := range seqPayloads(0, n) {
				pub.publish(t, "data/x", p, 1, nil)
			}
			eventually(t, "every message received by the bridge", func() bool { return b.Stats().Bridges[0].Out.Received == n })
			s := b.Stats().Bridges[0].Out
			if s.Queued != bound || s.Dropped.QueueFull != n-bound || s.Dropped.Total() != n-bound {
				t.Fatalf("queued %d, dropped %+v; want %d queued, %d dropped (queue_full)", s.Queued, s.Dropped, bound, n-bound)
			}
			// Stop the bridge so that the remote's subscriber is in place
			// before anything is sent; the queue waits on disk.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			remote.start()
			rsub := newClient(t, remote.url(), clientOpts{filters: []string{"data/#"}})
			rsub.subscribed(t)
			b = startBridge(t, fs, cfg)
			eventually(t, "the remote subscriber", func() bool {
				order, _ := distinct(rsub.matching("data/x"))
				return len(order) >= bound
			})
			eventually(t, "the queue to drain", func() bool { return b.Stats().Bridges[0].Out.Queued == 0 })
			checkStream(t, rsub.matching("data/x"), tc.want, func(int) string { return "data/x" })
		})
	}
}

// The bridge's host crashes (power loss: only what was synced survives)
// while it takes in a backlog from the local broker. Everything it
// acknowledged to the local broker is in its queue after the crash; the
// rest the local broker sends again. Nothing is lost. (Acknowledging
// before the queue write is durable fails this test.)
func TestBridgeCrash(t *testing.T) {
	t.Parallel()
	const n = 3000
	began := time.Now()
	local := startDurableSkybridge(t)
	remote := newMosquitto(t, "") // down: the queue fills
	mem := vfs.NewCrashableMem()
	cfg := testBridge("crash", local.url(), remote.url())
	cfg.Out = []Rule{{Filter: "d/#"}}
	// A first run creates the bridge's persistent session on the local
	// broker; while it is away, the local broker keeps the backlog.
	b0 := startBridge(t, vfs.NewMem(), cfg)
	eventually(t, "local connection", func() bool { return b0.Stats().Bridges[0].Local.Connected })
	b0.Close()
	pub := newClient(t, local.url(), clientOpts{})
	for _, p := range seqPayloads(0, n) {
		pub.publish(t, "d/x", p, 1, nil)
	}
	b1, err := New(Config{Bridges: []BridgeConfig{cfg}}, slowSyncFS{mem, 20 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a part of the backlog in the bridge", func() bool { return b1.Stats().Bridges[0].Out.Received >= n/10 })
	// The crash: cut the bridge off the local broker (no acknowledgement
	// gets out after this), then keep only what was synced.
	local.crash()
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	received := b1.Stats().Bridges[0].Out.Received
	b1.Close()

	local.start()
	remote.start()
	rsub := newClient(t, remote.url(), clientOpts{filters: []string{"d/#"}})
	rsub.subscribed(t)
	b2 := startBridge(t, crashed, cfg)
	eventually(t, "every message at the remote", func() bool {
		order, _ := distinct(rsub.matching("d/x"))
		return len(order) >= n
	})
	dups := checkStream(t, rsub.matching("d/x"), seqPayloads(0, n), func(int) string { return "d/x" })
	t.Logf("crashed after the bridge had received %d of %d; %d repeats; %d messages sent again by the local broker; took %v",
		received, n, dups, b2.Stats().Bridges[0].Out.Received, time.Since(began))
}
