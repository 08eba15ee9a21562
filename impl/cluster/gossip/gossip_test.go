package gossip

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// Short enough that failures are found in about a second, long enough
// that two shared cores under the race detector do not miss probes.
var testTiming = Timing{
	ProbeInterval:    200 * time.Millisecond,
	ProbeTimeout:     100 * time.Millisecond,
	GossipInterval:   20 * time.Millisecond,
	PushPullInterval: time.Second,
	SuspicionMult:    3,
}

const (
	key16hex = "000102030405060708090a0b0c0d0e0f"
	waitFor  = 20 * time.Second // a deadline, not a sleep: conditions are polled
)

// logTail keeps a node's last log lines, printed when a test fails.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimRight(string(p), "\n"))
	if len(l.lines) > 300 {
		l.lines = l.lines[len(l.lines)-200:]
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// changes records what OnChange reported.
type changes struct {
	mu  sync.Mutex
	all []cluster.Change
}

func (c *changes) add(ch cluster.Change) {
	c.mu.Lock()
	c.all = append(c.all, ch)
	c.mu.Unlock()
}

func (c *changes) about(id string) []cluster.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cluster.Change
	for _, ch := range c.all {
		if ch.Member.ID == id {
			out = append(out, ch)
		}
	}
	return out
}

type testNode struct {
	*Node
	changes *changes
}

func testConfig(id string, roles cluster.Roles, port int) Config {
	return Config{
		Cluster:   "test",
		NodeID:    id,
		Bind:      "127.0.0.1:0",
		JoinRetry: 50 * time.Millisecond,
		Roles:     roles,
		MQTT:      fmt.Sprintf("127.0.0.1:%d", port),
		Forward:   fmt.Sprintf("127.0.0.1:%d", port+1),
		KV:        fmt.Sprintf("127.0.0.1:%d", port+2),
		Timing:    testTiming,
	}
}

func start(t *testing.T, cfg Config) testNode {
	t.Helper()
	n, err := tryStart(t, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeID, err)
	}
	return n
}

func tryStart(t *testing.T, cfg Config) (testNode, error) {
	t.Helper()
	logs := &logTail{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ch := &changes{}
	cfg.OnChange = ch.add
	n, err := Start(cfg)
	if err != nil {
		return testNode{}, err
	}
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.NodeID, err)
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", cfg.NodeID, logs)
		}
	})
	return testNode{n, ch}, nil
}

// eventually polls cond until it returns "" or the deadline passes; cond
// says what it sees otherwise.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := cond()
		if got == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, waitFor, got)
		}
		<-tick.C
	}
}

func member(n testNode, id string) (cluster.Member, bool) {
	for _, m := range n.Members().Members {
		if m.ID == id {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// waitChange waits until OnChange has reported a change about id that
// matches, and returns the first such. (OnChange runs after the view
// changed, so a test that saw the view must still wait for it.)
func waitChange(t *testing.T, n testNode, id, what string, match func(cluster.Change) bool) cluster.Change {
	t.Helper()
	var got cluster.Change
	eventually(t, fmt.Sprintf("%s told of %s %s", n.cfg.NodeID, id, what), func() string {
		chs := n.changes.about(id)
		for _, ch := range chs {
			if match(ch) {
				got = ch
				return ""
			}
		}
		return fmt.Sprintf("%+v", chs)
	})
	return got
}

// sees waits until n shows id in state.
func sees(t *testing.T, n testNode, id string, state cluster.State) cluster.Member {
	t.Helper()
	var got cluster.Member
	eventually(t, fmt.Sprintf("%s sees %s %s", n.cfg.NodeID, id, state), func() string {
		m, ok := member(n, id)
		if !ok {
			return "absent"
		}
		if m.State != state {
			return m.State.String()
		}
		got = m
		return ""
	})
	return got
}

// cluster3 starts a, b (seed a) and c (seeds a and b) and waits until each
// sees the three alive.
func cluster3(t *testing.T) (a, b, c testNode) {
	t.Helper()
	a = start(t, testConfig("a", cluster.Roles(cluster.RoleFrontend|cluster.RoleRouting), 1000))
	cb := testConfig("b", cluster.Roles(cluster.RoleInbox|cluster.RoleRetain), 2000)
	cb.Seeds = []string{a.GossipAddr()}
	b = start(t, cb)
	cc := testConfig("c", cluster.Roles(cluster.RoleKV), 3000)
	cc.Seeds = []string{a.GossipAddr(), b.GossipAddr()}
	c = start(t, cc)
	for _, n := range []testNode{a, b, c} {
		for _, id := range []string{"a", "b", "c"} {
			sees(t, n, id, cluster.StateAlive)
		}
	}
	return a, b, c
}

func TestThreeNodesJoin(t *testing.T) {
	t.Parallel()
	a, b, c := cluster3(t)
	want := []cluster.Member{
		{ID: "a", State: cluster.StateAlive, Meta: cluster.Meta{Cluster: "test", Incarnation: a.Incarnation(),
			Roles: cluster.Roles(cluster.RoleFrontend | cluster.RoleRouting), MQTT: "127.0.0.1:1000", Forward: "127.0.0.1:1001", KV: "127.0.0.1:1002"}},
		{ID: "b", State: cluster.StateAlive, Meta: cluster.Meta{Cluster: "test", Incarnation: b.Incarnation(),
			Roles: cluster.Roles(cluster.RoleInbox | cluster.RoleRetain), MQTT: "127.0.0.1:2000", Forward: "127.0.0.1:2001", KV: "127.0.0.1:2002"}},
		{ID: "c", State: cluster.StateAlive, Meta: cluster.Meta{Cluster: "test", Incarnation: c.Incarnation(),
			Roles: cluster.Roles(cluster.RoleKV), MQTT: "127.0.0.1:3000", Forward: "127.0.0.1:3001", KV: "127.0.0.1:3002"}},
	}
	for i, n := range []testNode{a, b, c} {
		w := append([]cluster.Member(nil), want...)
		w[i].Local = true
		// Polled: on loaded cores a node may be taken for dead a moment.
		eventually(t, "view of "+n.cfg.NodeID, func() string {
			if diff := cmp.Diff(w, n.Members().Members); diff != "" {
				return "(-want +got):\n" + diff
			}
			return ""
		})
	}
}

func TestLeaveShowsLeft(t *testing.T) {
	t.Parallel()
	a, b, c := cluster3(t)
	if err := c.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []testNode{a, b} {
		if m := sees(t, n, "c", cluster.StateLeft); !m.Leaving {
			t.Errorf("%s: left member without Leaving: %+v", n.cfg.NodeID, m)
		}
	}
	if m, _ := member(c, "c"); m.State != cluster.StateLeft {
		t.Errorf("c's own view of itself after leaving: %+v", m)
	}
}

// A node that stops without leaving is found dead, not left. (memberlist
// does not report the suspicion before it: see the package comment.)
func TestFailureShowsDead(t *testing.T) {
	t.Parallel()
	a, b, c := cluster3(t)
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []testNode{a, b} {
		if m := sees(t, n, "c", cluster.StateDead); m.Leaving {
			t.Errorf("%s: dead member marked leaving: %+v", n.cfg.NodeID, m)
		}
		waitChange(t, n, "c", "dead", func(ch cluster.Change) bool { return ch.Member.State == cluster.StateDead })
	}
}

func TestRestartShowsHigherIncarnation(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig("a", cluster.AllRoles, 1000))
	cb := testConfig("b", cluster.AllRoles, 2000)
	cb.Seeds = []string{a.GossipAddr()}
	cb.Incarnation = 100
	b := start(t, cb)
	sees(t, a, "b", cluster.StateAlive)
	addr := b.GossipAddr()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	sees(t, a, "b", cluster.StateDead)

	// Same id, same address, new process: a higher incarnation.
	// Until it is free again: meanwhile another socket of this machine
	// may hold the port, as an ephemeral source port.
	cb.Bind, cb.Incarnation = addr, 200
	var b2 testNode
	eventually(t, "b restarts on "+addr, func() string {
		n, err := tryStart(t, cb)
		if err != nil {
			return err.Error()
		}
		b2 = n
		return ""
	})
	eventually(t, "a sees b's second incarnation", func() string {
		m, _ := member(a, "b")
		if m.State != cluster.StateAlive || m.Incarnation != 200 {
			return fmt.Sprintf("%s incarnation %d", m.State, m.Incarnation)
		}
		return ""
	})
	back := waitChange(t, a, "b", "incarnation 200", func(ch cluster.Change) bool { return ch.Member.Incarnation == 200 })
	if !back.Restarted || back.Previous.Incarnation != 100 || back.Previous.State != cluster.StateDead {
		t.Errorf("the change that brought b back: %+v", back)
	}
	sees(t, b2, "a", cluster.StateAlive)
}

// Nodes that cannot join: join attempts fail, and neither side lists the
// other.
func cannotJoin(t *testing.T, a, b testNode) {
	t.Helper()
	eventually(t, "b's join attempts fail", func() string {
		if s := b.Stats(); s.JoinFailures < 3 {
			return fmt.Sprintf("%d attempts, %d failures", s.JoinAttempts, s.JoinFailures)
		}
		return ""
	})
	for _, n := range []testNode{a, b} {
		if v := n.Members(); len(v.Members) != 1 {
			t.Errorf("%s sees %+v", n.cfg.NodeID, v.Members)
		}
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	ca := testConfig("a", cluster.AllRoles, 1000)
	ca.SecretKey = key16hex
	a := start(t, ca)
	cb := testConfig("b", cluster.AllRoles, 2000)
	cb.SecretKey = "ffffffffffffffffffffffffffffffff"
	cb.Seeds = []string{a.GossipAddr()}
	b := start(t, cb)
	cannotJoin(t, a, b)

	// The same key in base64 joins: the check above failed for the key.
	cc := testConfig("c", cluster.AllRoles, 3000)
	raw, _ := ParseSecretKey(key16hex)
	cc.SecretKey = base64.StdEncoding.EncodeToString(raw)
	cc.Seeds = []string{a.GossipAddr()}
	c := start(t, cc)
	sees(t, a, "c", cluster.StateAlive)
	sees(t, c, "a", cluster.StateAlive)
}

func TestOtherClusterCannotJoin(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig("a", cluster.AllRoles, 1000))
	cb := testConfig("b", cluster.AllRoles, 2000)
	cb.Cluster = "other"
	cb.Seeds = []string{a.GossipAddr()}
	b := start(t, cb)
	cannotJoin(t, a, b)
}

// Not parallel: it counts the process's goroutines.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	ca := testConfig("a", cluster.AllRoles, 1000)
	ca.Logger = slog.New(slog.DiscardHandler)
	a, err := Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	cb := testConfig("b", cluster.AllRoles, 2000)
	cb.Seeds = []string{a.GossipAddr()}
	cb.Logger = slog.New(slog.DiscardHandler)
	b, err := Start(cb)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b", func() string {
		if len(a.Members().Members) != 2 {
			return fmt.Sprint(a.Members().Members)
		}
		return ""
	})
	if err := b.Leave(5 * time.Second); err != nil {
		t.Error(err)
	}
	for _, n := range []*Node{b, a} {
		if err := n.Shutdown(); err != nil {
			t.Error(err)
		}
	}
	eventually(t, "goroutines back to their number before", func() string {
		if now := runtime.NumGoroutine(); now > before {
			buf := make([]byte, 1<<16)
			return fmt.Sprintf("%d > %d:\n%s", now, before, buf[:runtime.Stack(buf, true)])
		}
		return ""
	})
}
