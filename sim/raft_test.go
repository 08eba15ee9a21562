package sim

import (
	"encoding/binary"
	"io"
	"log"
	"testing"
	"testing/cryptotest"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// raftNode is one etcd raft RawNode on a simulated host: ticks are
// simulation events, messages travel over the virtual network.
type raftNode struct {
	id      uint64
	rn      *raft.RawNode
	store   *raft.MemoryStorage
	host    *Host
	s       *Sim
	peers   map[uint64]*Endpoint // lookup only, never iterated
	in      map[*Endpoint][]byte
	leader  uint64
	term    uint64
	elected time.Duration // when this node first became leader
}

func (n *raftNode) Opened(*Endpoint)                {}
func (n *raftNode) Writable(*Endpoint)              {}
func (n *raftNode) Closed(ep *Endpoint, reset bool) {}

// Data frames length-prefixed raft messages and steps them.
func (n *raftNode) Data(ep *Endpoint, b []byte) {
	ep.Consume(len(b))
	buf := append(n.in[ep], b...)
	for len(buf) >= 4 {
		k := int(binary.BigEndian.Uint32(buf))
		if len(buf) < 4+k {
			break
		}
		var m pb.Message
		if err := proto.Unmarshal(buf[4:4+k], &m); err != nil {
			panic(err)
		}
		buf = buf[4+k:]
		_ = n.rn.Step(&m)
	}
	n.in[ep] = append([]byte(nil), buf...)
	n.ready()
}

// ready persists and sends what raft asks for, as a runtime must.
func (n *raftNode) ready() {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			_ = n.store.SetHardState(rd.HardState)
		}
		_ = n.store.Append(rd.Entries)
		for _, m := range rd.Messages {
			b, err := proto.Marshal(m)
			if err != nil {
				panic(err)
			}
			frame := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
			frame = append(frame, b...)
			n.s.Note(KindRaft, n.host.ID, 0, m.GetType().String())
			if ep := n.peers[m.GetTo()]; ep != nil {
				ep.Write(frame)
			}
		}
		if rd.SoftState != nil {
			n.leader = rd.SoftState.Lead
			if rd.SoftState.RaftState == raft.StateLeader && n.elected == 0 {
				n.elected = n.s.Elapsed()
				n.term = n.rn.BasicStatus().GetTerm()
			}
		}
		n.rn.Advance(rd)
	}
}

type raftOutcome struct {
	leader  uint64
	term    uint64
	elected time.Duration
	hash    uint64
	events  uint64
}

// runRaft runs three raft nodes for 10 virtual seconds on the simulator.
func runRaft(t *testing.T, seed uint64) raftOutcome {
	t.Helper()
	s := New(seed, 16)
	net := NewNetwork(s, LinkSpec{Latency: 5 * time.Millisecond, Jitter: 20 * time.Millisecond})
	peers := []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}
	nodes := map[uint64]*raftNode{}
	var order []*raftNode
	for _, p := range peers {
		st := raft.NewMemoryStorage()
		rn, err := raft.NewRawNode(&raft.Config{ID: p.ID, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256,
			Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rn.Bootstrap(peers); err != nil {
			t.Fatal(err)
		}
		n := &raftNode{id: p.ID, rn: rn, store: st, s: s, peers: map[uint64]*Endpoint{}, in: map[*Endpoint][]byte{}}
		n.host = net.AddHost("raft-" + string(rune('0'+p.ID)))
		nodes[p.ID] = n
		order = append(order, n)
	}
	// One connection per ordered pair: i dials j for its messages to j.
	for _, a := range order {
		a.host.Listen(1, func(*Endpoint) Handler { return a })
	}
	for _, a := range order {
		for _, b := range order {
			if a != b {
				a.peers[b.id] = a.host.Dial(b.host.Name, 1, a)
			}
		}
	}
	// Ticks on virtual time, each node with its own phase.
	for _, n := range order {
		n := n
		var tick func()
		tick = func() {
			n.rn.Tick()
			n.ready()
			s.After(100*time.Millisecond, tick)
		}
		s.After(time.Duration(s.Rand.IntN(100))*time.Millisecond, tick)
	}
	s.Run(Epoch.Add(10 * time.Second))
	var out raftOutcome
	for _, n := range order {
		if n.elected != 0 && (out.elected == 0 || n.term > out.term) {
			out.leader, out.term, out.elected = n.id, n.term, n.elected
		}
	}
	out.hash, out.events = s.Trace.Hash(), s.Trace.Count()
	return out
}

// TestRaftDeterministic drives three etcd raft RawNodes through the
// simulator. raft draws its election jitter from crypto/rand (v3.7.0,
// raft.go globalRand): cryptotest.SetGlobalRandom, seeded from the
// simulation seed, makes it deterministic inside this test binary. See
// doc.go for what skybridge-sim must do instead.
func TestRaftDeterministic(t *testing.T) {
	// Not parallel: SetGlobalRandom changes the whole process.
	run := func(seed uint64) raftOutcome {
		cryptotest.SetGlobalRandom(t, seed)
		return runRaft(t, seed)
	}
	a, b := run(7), run(7)
	if a.elected == 0 {
		t.Fatal("no leader elected in 10 virtual seconds")
	}
	if a != b {
		t.Fatalf("same seed, different runs: %+v vs %+v", a, b)
	}
	c := run(8)
	if c.hash == a.hash {
		t.Fatalf("seeds 7 and 8 gave the same trace")
	}
	t.Logf("seed 7: leader %d elected at %v in term %d (%d events); seed 8: leader %d at %v term %d",
		a.leader, a.elected, a.term, a.events, c.leader, c.elected, c.term)
}
