package broker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/store"
)

// durableHarness runs a broker on a Pebble store on a crashable in-memory
// file system, with the committer stepped by the test.
type durableHarness struct {
	*harness
	fs *vfs.MemFS
	st *store.Pebble
}

func newDurable(t *testing.T, fs *vfs.MemFS, clock *env.ManualClock) *durableHarness {
	t.Helper()
	st, err := store.Open(fs, "data", store.Options{DisableCompactions: true})
	if err != nil {
		t.Fatal(err)
	}
	b := New(DefaultConfig(), env.Env{Clock: clock, Rand: env.NewRand(1)}, st)
	if err := b.Recover(); err != nil {
		t.Fatal(err)
	}
	return &durableHarness{harness: &harness{t: t, b: b, clock: clock}, fs: fs, st: st}
}

// settle commits until nothing waits for the store.
func (d *durableHarness) settle() {
	for d.st.Step() > 0 {
	}
}

// crash simulates a power loss: only synced data survives.
func (d *durableHarness) crash(t *testing.T) *durableHarness {
	t.Helper()
	clone := d.fs.CrashClone(vfs.CrashCloneCfg{})
	return newDurable(t, clone, d.clock)
}

func TestPersistentSessionSurvivesCrash(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	d := newDurable(t, vfs.NewCrashableMem(), clock)
	sub := d.dial("sub", packet.V5, "t")
	sub.connect("sub", false, expiry(3600))
	sub.expect() // the CONNACK waits for the session record
	d.settle()
	sub.expect("CONNACK code=0x00 receive-max=1024 alias-max=64 max-packet=1048576")
	sub.send(subscribe(1, "q/#", 2))
	d.settle()
	sub.expect("SUBACK id=1 codes=[0x02]")
	sub.c.Closed()
	d.settle()

	pub := d.dial("pub", packet.V311, "t")
	pub.connect("pub", true, packet.Properties{})
	pub.expect("CONNACK code=0x00")
	pub.send(pub_("q/1", "one", 1, 1))
	pub.send(pub_("q/2", "two", 2, 2))
	pub.expect() // nothing is acknowledged before it is durable
	d.settle()
	pub.expect("PUBACK id=1", "PUBREC id=2")

	d = d.crash(t)
	sub2 := d.dial("sub2", packet.V5, "t")
	sub2.connect("sub", false, expiry(3600))
	d.settle()
	sub2.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576",
		`PUBLISH topic="q/1" qos=1 id=1 dup payload="one"`,
		`PUBLISH topic="q/2" qos=2 id=2 dup payload="two"`)
}

func pub_(topic, payload string, qos packet.QoS, id uint16) *packet.Publish {
	return &packet.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id}
}

// TestCrashAtRandomPoints runs random workloads, crashes the store at a
// random point, restarts the broker on what survived and checks that every
// acknowledged message reaches each persistent subscriber: at least once
// for QoS 1, exactly once for QoS 2, in publish order per publisher.
func TestCrashAtRandomPoints(t *testing.T) {
	t.Parallel()
	seeds := 30
	if n, err := strconv.Atoi(os.Getenv("SKYBRIDGE_CRASH_SEEDS")); err == nil && n > 0 {
		seeds = n // make crash-soak
	}
	for seed := 1; seed <= seeds; seed++ {
		runCrashSeed(t, uint64(seed))
	}
}

// model of a well-behaved subscriber: what it received, with QoS 2
// duplicates removed as a client does (by packet id until PUBREL).
type subModel struct {
	name    string
	got     map[string]int // payload → times received (after dedup)
	order   map[string][]int
	awaitQ2 map[uint16]bool
}

func (m *subModel) absorb(t *testing.T, c *client) {
	t.Helper()
	for {
		out, _ := c.c.Output(nil)
		if len(out) == 0 {
			return
		}
		dec := packet.NewDecoder(bytes.NewReader(out), c.v)
		for {
			p, err := dec.Next()
			if err != nil {
				break
			}
			switch p := p.(type) {
			case *packet.Publish:
				payload := string(p.Payload)
				count := true
				if p.QoS == 2 {
					if m.awaitQ2[p.PacketID] {
						count = false
					}
					m.awaitQ2[p.PacketID] = true
					c.send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
				} else if p.QoS == 1 {
					c.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID})
				}
				if count {
					m.got[payload]++
					var pubIdx, n int
					fmt.Sscanf(payload, "p%d-%d", &pubIdx, &n)
					key := fmt.Sprint(pubIdx)
					m.order[key] = append(m.order[key], n)
				}
			case *packet.Ack:
				if p.PacketType == packet.PUBREL {
					delete(m.awaitQ2, p.PacketID)
					c.send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: p.PacketID})
				}
			}
		}
	}
}

func runCrashSeed(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 99))
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	d := newDurable(t, vfs.NewCrashableMem(), clock)
	subs := []*subModel{
		{name: "s0", got: map[string]int{}, order: map[string][]int{}, awaitQ2: map[uint16]bool{}},
		{name: "s1", got: map[string]int{}, order: map[string][]int{}, awaitQ2: map[uint16]bool{}},
	}
	conns := make([]*client, len(subs))
	for i, m := range subs {
		c := d.dial(m.name, packet.V5, "t")
		c.connect(m.name, false, expiry(3600))
		c.send(subscribe(1, "w/#", 2))
		d.settle()
		c.recv()
		conns[i] = c
	}
	// Subscriber 1 goes offline: its messages queue.
	conns[1].c.Closed()
	d.settle()

	type pubState struct {
		c      *client
		next   int
		qos    map[uint16]packet.QoS
		body   map[uint16]string
		acked  []string
		nextID uint16
	}
	pubs := []*pubState{}
	for i := range 2 {
		c := d.dial(fmt.Sprint("p", i), packet.V5, "t")
		c.connect(fmt.Sprint("p", i), true, packet.Properties{})
		c.recv()
		pubs = append(pubs, &pubState{c: c, qos: map[uint16]packet.QoS{}, body: map[uint16]string{}})
	}
	steps := 20 + r.IntN(60)
	for range steps {
		switch x := r.IntN(10); {
		case x < 6:
			p := pubs[r.IntN(len(pubs))]
			p.nextID++
			qos := packet.QoS(1 + r.IntN(2))
			idx := 0
			if p == pubs[1] {
				idx = 1
			}
			body := fmt.Sprintf("p%d-%d", idx, p.next)
			p.next++
			p.qos[p.nextID], p.body[p.nextID] = qos, body
			p.c.send(pub_("w/x", body, qos, p.nextID))
		case x < 8:
			d.st.Step()
		default:
			subs[0].absorb(t, conns[0])
		}
		// Publishers read their acknowledgements: PUBACK and PUBREC mean
		// the broker owns the message.
		for _, p := range pubs {
			got, _ := p.c.recv()
			for _, line := range got {
				var id int
				if _, err := fmt.Sscanf(line, "PUBACK id=%d", &id); err == nil {
					p.acked = append(p.acked, p.body[uint16(id)])
				} else if _, err := fmt.Sscanf(line, "PUBREC id=%d", &id); err == nil {
					p.acked = append(p.acked, p.body[uint16(id)])
					p.c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: uint16(id)})
				}
			}
		}
	}
	// Power loss, restart on what was synced, subscribers come back.
	d = d.crash(t)
	for i, m := range subs {
		c := d.dial(m.name+"-again", packet.V5, "t")
		c.connect(m.name, false, expiry(3600))
		for range 200 {
			d.settle()
			m.absorb(t, c)
			if d.st.Pending() == 0 {
				d.settle()
				m.absorb(t, c)
			}
		}
		conns[i] = c
	}
	for _, p := range pubs {
		for _, body := range p.acked {
			for _, m := range subs {
				n := m.got[body]
				if n == 0 {
					t.Fatalf("seed %d: acknowledged %s never reached %s", seed, body, m.name)
				}
				if n > 1 && p.qos[idOf(p.body, body)] == packet.QoS2 {
					t.Fatalf("seed %d: QoS 2 %s reached %s %d times", seed, body, m.name, n)
				}
			}
		}
	}
	// Order per publisher: each subscriber saw each publisher's messages in
	// publish order (a QoS 1 duplicate may repeat an earlier one).
	for _, m := range subs {
		for pubKey, seq := range m.order {
			high := -1
			for _, n := range seq {
				if n < high && m.got[fmt.Sprintf("p%s-%d", pubKey, n)] < 2 {
					t.Fatalf("seed %d: %s received publisher %s's messages out of order: %v", seed, m.name, pubKey, seq)
				}
				high = max(high, n)
			}
		}
	}
}

func idOf(bodies map[uint16]string, body string) uint16 {
	for id, b := range bodies {
		if b == body {
			return id
		}
	}
	return 0
}

func subscribe(id uint16, filter string, qos packet.QoS) *packet.Subscribe {
	return sub(id, filter, qos)
}

// With a runtime that calls Idle after each batch of packets, the
// PUBLISHes of a batch share one commit, made at Idle; the acknowledgements
// wait for it and keep their order, and what they promise survives a power
// loss. A batch larger than the bound commits without waiting for Idle.
func TestBatchOfPublishesSharesOneCommit(t *testing.T) {
	t.Parallel()
	d, sub := subscribedDurable(t, 2)
	sub.c.Closed() // offline: what the publisher sends goes to its queue on disk
	d.settle()

	pub := d.batchedPublisher("pub")
	for i := 1; i <= 5; i++ {
		pub.send(pub_(fmt.Sprintf("q/%d", i), fmt.Sprint(i), 1, uint16(i)))
	}
	pub.send(pub_("q/6", "6", 2, 6))
	if n := d.st.Pending(); n != 0 {
		t.Fatalf("%d commits before the batch ended, want 0", n)
	}
	pub.expect() // nothing is acknowledged before it is durable
	pub.c.Idle()
	if n := d.st.Pending(); n != 1 {
		t.Fatalf("%d commits for the batch, want 1", n)
	}
	pub.expect()
	d.settle()
	pub.expect("PUBACK id=1", "PUBACK id=2", "PUBACK id=3", "PUBACK id=4", "PUBACK id=5", "PUBREC id=6")

	// Beyond maxBatchAcks messages, the batch commits on its own.
	for i := range maxBatchAcks + 1 {
		pub.send(pub_("q/x", fmt.Sprint(100+i), 1, uint16(100+i)))
	}
	if n := d.st.Pending(); n != 1 {
		t.Fatalf("%d commits after %d PUBLISHes without Idle, want 1", n, maxBatchAcks+1)
	}
	d.settle()
	got, _ := pub.recv()
	if len(got) != maxBatchAcks || got[0] != "PUBACK id=100" {
		t.Fatalf("%d acknowledgements before Idle (first %q), want %d from id=100", len(got), got[0], maxBatchAcks)
	}
	pub.c.Idle()
	d.settle()
	pub.expect(fmt.Sprintf("PUBACK id=%d", 100+maxBatchAcks))

	d = d.crash(t)
	sub2 := d.dial("sub2", packet.V5, "t")
	sub2.connect("sub", false, expiry(3600))
	d.settle()
	got, _ = sub2.recv()
	want := []string{"CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576"}
	for i := 1; i <= 5; i++ {
		want = append(want, fmt.Sprintf(`PUBLISH topic="q/%d" qos=1 id=%d dup payload="%d"`, i, i, i))
	}
	want = append(want, `PUBLISH topic="q/6" qos=2 id=6 dup payload="6"`)
	if diff := cmp.Diff(want, got[:len(want)]); diff != "" {
		t.Fatalf("after the power loss (-want +got):\n%s", diff)
	}
	if n := len(got) - len(want); n != maxBatchAcks+1 {
		t.Fatalf("%d of the %d later messages after the power loss", n, maxBatchAcks+1)
	}
}

// A QoS 1 PUBLISH goes to a connected subscriber at once, before the
// commit that holds its queue entry (the publisher's batch commits at
// Idle): the subscriber may acknowledge it, and the entry's removal be
// committed, before the entry itself. The entry must not then be written
// after its removal, to be sent again after a restart (and never removed).
func TestRemovalCommittedBeforeItsEntry(t *testing.T) {
	t.Parallel()
	d, sub := subscribedDurable(t, 1)

	pub := d.batchedPublisher("pub")
	pub.send(pub_("q/1", "one", 1, 1)) // its entry waits in the publisher's batch
	sub.expect(`PUBLISH topic="q/1" qos=1 id=1 payload="one"`)
	sub.send(&packet.Ack{PacketType: packet.PUBACK, PacketID: 1})
	sub.expect() // the removal is committed when the output is taken
	d.settle()   // ... and written before the entry
	pub.c.Idle()
	d.settle()
	pub.expect("PUBACK id=1")
	d.crash(t).expectNothingQueued("sub")
}

// A subscriber's output held behind a queue entry in a publisher's batch
// (committed at Idle) waits for that batch, whatever commits first: the
// subscriber's own gating change, another publisher's batch.
func TestHeldOutputWaitsForItsOwnBatch(t *testing.T) {
	t.Parallel()
	d, sub := subscribedDurable(t, 2)
	p1, p2 := d.batchedPublisher("p1"), d.batchedPublisher("p2")
	p1.send(pub_("q/1", "one", 2, 1)) // its entry waits in p1's batch
	sub.send(subscribe(2, "z", 1))    // the subscriber's own change, committed now
	d.settle()
	p2.send(pub_("q/2", "two", 2, 1))
	p2.c.Idle() // p2's batch, committed now
	d.settle()
	p2.expect("PUBREC id=1")
	sub.expect() // everything waits behind q/1, which is not durable
	p1.c.Idle()
	d.settle()
	p1.expect("PUBREC id=1")
	sub.expect(`PUBLISH topic="q/1" qos=2 id=1 payload="one"`, "SUBACK id=2 codes=[0x01]",
		`PUBLISH topic="q/2" qos=2 id=2 payload="two"`)
}

// A queue entry taken into a publisher's batch for a session that is
// discarded (a clean-start reconnection) before the batch commits is not
// written under the client's keys, which the new session uses.
func TestEntryOfDiscardedSessionNotWritten(t *testing.T) {
	t.Parallel()
	d, sub := subscribedDurable(t, 1)
	sub.c.Closed()
	d.settle()

	pub := d.batchedPublisher("pub")
	pub.send(pub_("q/1", "old", 1, 1)) // an entry for the old session, in pub's batch

	sub2 := d.dial("sub2", packet.V5, "t")
	sub2.connect("sub", true, expiry(3600)) // clean start: the old session and its queue go
	d.settle()
	sub2.expect(connack5)
	sub2.c.Closed()
	d.settle()
	pub.c.Idle()
	d.settle()
	pub.expect("PUBACK id=1")
	d.crash(t).expectNothingQueued("sub")
}

// subscribedDurable starts a durable broker with a persistent 5.0
// subscriber "sub" on q/# at qos, its CONNACK and SUBACK read.
func subscribedDurable(t *testing.T, qos packet.QoS) (*durableHarness, *client) {
	t.Helper()
	d := newDurable(t, vfs.NewCrashableMem(), env.NewManualClock(time.Unix(1_700_000_000, 0)))
	sub := d.dial("sub", packet.V5, "t")
	sub.connect("sub", false, expiry(3600))
	d.settle()
	sub.send(subscribe(1, "q/#", qos))
	d.settle()
	sub.expect(connack5, fmt.Sprintf("SUBACK id=1 codes=[0x%02x]", qos))
	return d, sub
}

// batchedPublisher connects a clean 3.1.1 publisher whose runtime ends its
// batches with Idle (ConnInfo.IdleEndsBatch).
func (d *durableHarness) batchedPublisher(name string) *client {
	d.t.Helper()
	p := &client{h: d.harness, v: packet.V311, name: name}
	p.c = d.b.NewConn(ConnInfo{Listener: "test", DefaultTenant: "t", Remote: name, IdleEndsBatch: true}, func() {})
	p.connect(name, true, packet.Properties{})
	p.expect("CONNACK code=0x00")
	return p
}

// expectNothingQueued checks that client id's persistent session is there
// (Session Present) with nothing to send.
func (d *durableHarness) expectNothingQueued(id string) {
	d.t.Helper()
	c := d.dial(id+"-again", packet.V5, "t")
	c.connect(id, false, expiry(3600))
	d.settle()
	c.expect("CONNACK present code=0x00 receive-max=1024 alias-max=64 max-packet=1048576")
}
