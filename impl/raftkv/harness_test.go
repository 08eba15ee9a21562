package raftkv

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// tcluster drives nodes in one goroutine: every message goes through the
// wire codec, batches commit at once, ticks are explicit. It is the
// smallest runtime the core needs, for unit tests; the simulator
// (sim/kvsim) is the hostile one.
type tcluster struct {
	t       testing.TB
	cfg     Config
	ids     []NodeID
	nodes   map[NodeID]*Node
	disks   map[NodeID]vfs.FS
	dirs    map[NodeID]string // each node's directory on its disk
	mkfs    func() (vfs.FS, string)
	inbox   []*Message
	replies map[NodeID]map[uint64]*Response
	events  map[NodeID][]WatchEvent
	down    map[NodeID]bool
	cut     map[[2]NodeID]bool
	nextID  uint64
	rand    *env.SeededRand
	onReply func(at NodeID, id uint64) // when set, hears of each reply as the node outputs it
}

func newCluster(t testing.TB, n int, mod func(*Config)) *tcluster {
	t.Helper()
	return newClusterFS(t, n, mod, memFS(vfs.NewCrashableMem))
}

// memFS makes each node's disk a new in-memory file system.
func memFS(mk func() *vfs.MemFS) func() (vfs.FS, string) {
	return func() (vfs.FS, string) { return mk(), "kv" }
}

// newClusterFS is newCluster on the file systems and directories mkfs
// makes (benchmarks use vfs.NewMem: the crashable one copies a file on
// every sync; or a real file system).
func newClusterFS(t testing.TB, n int, mod func(*Config), mkfs func() (vfs.FS, string)) *tcluster {
	t.Helper()
	c := &tcluster{t: t, mkfs: mkfs, nodes: map[NodeID]*Node{}, disks: map[NodeID]vfs.FS{}, dirs: map[NodeID]string{}, replies: map[NodeID]map[uint64]*Response{},
		events: map[NodeID][]WatchEvent{},
		down:   map[NodeID]bool{}, cut: map[[2]NodeID]bool{}, rand: env.NewRand(1)}
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, NodeID(i))
	}
	c.cfg = Config{Peers: slices.Clone(c.ids), SplitBytes: 1 << 30, MergeBytes: 0}
	if mod != nil {
		mod(&c.cfg)
	}
	for _, id := range c.ids {
		c.disks[id], c.dirs[id] = c.mkfs()
		c.start(id)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
	})
	return c
}

func (c *tcluster) start(id NodeID) {
	c.t.Helper()
	cfg := c.cfg
	cfg.ID, cfg.FS, cfg.Dir, cfg.Rand = id, c.disks[id], c.dirs[id], env.NewRand(uint64(id)*7919+c.rand.Uint64())
	if !slices.Contains(cfg.Peers, id) {
		cfg.Join = true
	}
	n, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("open n%d: %v", id, err)
	}
	c.nodes[id] = n
	c.replies[id] = map[uint64]*Response{}
	delete(c.down, id)
}

// add starts a new node that joins the cluster.
func (c *tcluster) add(id NodeID) {
	c.ids = append(c.ids, id)
	c.disks[id], c.dirs[id] = c.mkfs()
	c.start(id)
}

// crash stops a node; with powerLoss, unsynced writes are lost.
func (c *tcluster) crash(id NodeID, powerLoss bool) {
	n := c.nodes[id]
	if powerLoss {
		c.disks[id] = c.disks[id].(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	}
	n.Close()
	delete(c.nodes, id)
	c.down[id] = true
}

// step runs one round: every node persists and applies what it has, and
// every message queued so far is delivered.
func (c *tcluster) step() {
	for _, id := range c.ids {
		n := c.nodes[id]
		if n == nil {
			continue
		}
		for n.HasReady() {
			rd, err := n.Ready()
			if err != nil {
				c.t.Fatal(err)
			}
			if err := rd.Commit(); err != nil {
				c.t.Fatal(err)
			}
			if err := n.Advance(rd); err != nil {
				c.t.Fatal(err)
			}
			c.collect(id)
		}
		c.collect(id)
	}
	msgs := c.inbox
	c.inbox = nil
	for _, m := range msgs {
		dst := c.nodes[m.To]
		if dst == nil || c.cut[[2]NodeID{m.From, m.To}] {
			continue
		}
		dst.Receive(m)
	}
}

func (c *tcluster) collect(id NodeID) {
	n := c.nodes[id]
	out := n.TakeOutput()
	for _, r := range out.Replies {
		c.replies[id][r.ID] = r.Resp
		if c.onReply != nil {
			c.onReply(id, r.ID)
		}
	}
	c.events[id] = append(c.events[id], out.Watch...)
	for _, m := range out.Messages {
		if m.Snap != nil {
			var data []KV
			for {
				kvs, err := m.Snap.Next(64 << 10)
				if err != nil {
					c.t.Fatal(err)
				}
				if len(kvs) == 0 {
					break
				}
				data = append(data, kvs...)
			}
			m.SnapData = data
			ok := !c.down[m.To] && !c.cut[[2]NodeID{m.From, m.To}]
			n.SnapshotDone(m, ok)
		}
		b, err := EncodeMessage(nil, m)
		if err != nil {
			c.t.Fatal(err)
		}
		dm, err := DecodeMessage(b)
		if err != nil {
			c.t.Fatal(err)
		}
		c.inbox = append(c.inbox, dm)
	}
}

func (c *tcluster) tick() {
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			n.Tick()
		}
	}
	c.step()
	c.step()
}

// run ticks until cond holds or ticks run out.
func (c *tcluster) run(ticks int, cond func() bool) bool {
	for range ticks {
		if cond() {
			return true
		}
		c.tick()
	}
	return cond()
}

// do submits req at node and waits for its answer.
func (c *tcluster) do(at NodeID, req *Request) *Response {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	c.nodes[at].Submit(id, req)
	c.collect(at)
	var resp *Response
	c.run(200, func() bool { resp = c.replies[at][id]; return resp != nil })
	if resp == nil {
		c.t.Fatalf("no answer from n%d to %+v", at, req)
	}
	return resp
}

// must is do that fails the test on an error, retrying retryable ones.
func (c *tcluster) must(at NodeID, req *Request) *Response {
	c.t.Helper()
	for range 20 {
		resp := c.do(at, req)
		if resp.Err == nil {
			return resp
		}
		if !resp.Err.Retryable() || resp.Err.Ambiguous {
			c.t.Fatalf("n%d %+v: %v", at, req, resp.Err)
		}
		c.run(5, func() bool { return false })
	}
	c.t.Fatalf("n%d %+v: no success after retries", at, req)
	return nil
}

func put(k, v string) *Request {
	return &Request{Kind: ReqWrite, Ops: []Op{{Kind: OpPut, Key: []byte(k), Value: []byte(v)}}}
}

func get(k string) *Request { return &Request{Kind: ReqGet, Key: []byte(k)} }

// leaders returns, per range, the node whose replica leads.
func (c *tcluster) leaders() map[RangeID]NodeID {
	out := map[RangeID]NodeID{}
	for _, id := range c.ids {
		n := c.nodes[id]
		if n == nil {
			continue
		}
		for _, lr := range n.Ranges() {
			if lr.Leader {
				out[lr.Desc.RangeID] = id
			}
		}
	}
	return out
}

// dump describes every node's replicas (for failure messages).
func (c *tcluster) dump() string {
	s := ""
	for _, id := range c.ids {
		n := c.nodes[id]
		if n == nil {
			s += fmt.Sprintf("n%d down\n", id)
			continue
		}
		for _, lr := range n.Ranges() {
			s += fmt.Sprintf("n%d: %v applied=%d leader=%v term=%d frozen=%v bytes=%d\n", id, lr.Desc, lr.Applied, lr.Leader, lr.Term, lr.Frozen, lr.LiveBytes)
		}
	}
	return s
}

// deleteAll deletes [start, end) range by range (a DeleteRange must fall
// in one range), following Resume keys of a scan.
func (c *tcluster) deleteAll(start, end string) {
	c.t.Helper()
	k := []byte(start)
	for k != nil && string(k) < end {
		resp := c.must(1, &Request{Kind: ReqScan, Key: k, End: []byte(end), Limit: 1})
		if len(resp.KVs) == 0 {
			return
		}
		from := resp.KVs[0].Key
		// Delete up to the end of that key's range.
		r := c.must(1, &Request{Kind: ReqScan, Key: from, End: []byte(end)})
		stop := []byte(end)
		if r.Resume != nil {
			stop = r.Resume
		}
		c.must(1, &Request{Kind: ReqWrite, Ops: []Op{{Kind: OpDeleteRange, Key: from, End: stop}}})
		k = stop
	}
}

// busy says whether a step would do anything: a node has a Ready or a
// message waits for delivery.
func (c *tcluster) busy() bool {
	if len(c.inbox) > 0 {
		return true
	}
	for _, n := range c.nodes {
		if n.HasReady() {
			return true
		}
	}
	return false
}
