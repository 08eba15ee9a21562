package gossip

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster"
)

// Reconnection, as serf does it. memberlist probes and push/pulls only the
// members it holds alive, and gossips to a dead one only while it has news
// queued and for GossipToTheDeadTime: once both sides of a partition hold
// each other dead, nothing memberlist does would bring them together again
// when the network heals. So every ReconnectInterval (jittered) the node
// joins again the members it holds dead, at the last gossip address it
// knew for each, for ReconnectTimeout after each died, and its seeds while
// any such member is dead (a member's address may have changed, or been
// forgotten). A join that reaches the other side is a push/pull: each side
// learns the other holds it dead and refutes that with a higher memberlist
// incarnation, which the other then takes: both report the member alive
// again (same node incarnation, so not Restarted). Left members are not
// tried: they said they were going.

// maxReconnectAttempts bounds the addresses tried at once, per round: a
// join to an unreachable address can take memberlist's TCP timeout (10 s).
const maxReconnectAttempts = 8

// reconnectBook keeps, per member, the last gossip address memberlist
// reported for it and, for members dead in the view, since when.
type reconnectBook struct {
	mu        sync.Mutex
	maxAddrs  int // beyond, addresses of nodes not in the view are forgotten
	addr      map[string]string
	deadSince map[string]time.Time
	gaveUp    map[string]bool // dead past ReconnectTimeout: counted once
}

func (b *reconnectBook) init(maxAddrs int) {
	b.maxAddrs = maxAddrs
	b.addr, b.deadSince, b.gaveUp = map[string]string{}, map[string]time.Time{}, map[string]bool{}
}

func (b *reconnectBook) setAddr(id, addr string) {
	b.mu.Lock()
	b.addr[id] = addr
	b.mu.Unlock()
}

// state records a member's new state (an applied change).
func (b *reconnectBook) state(m cluster.Member, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.State == cluster.StateDead {
		if _, ok := b.deadSince[m.ID]; !ok {
			b.deadSince[m.ID] = now
		}
		return
	}
	delete(b.deadSince, m.ID)
	delete(b.gaveUp, m.ID)
}

// targets returns the addresses to try now for the view v (dead members
// within timeout, then seeds when any is dead), at most max of them, and
// how many members it gave up on since the last call. It forgets the
// death of members no longer in the view, and their addresses when it holds
// more than maxAddrs (not always: memberlist reports a node before the
// core's view has it).
func (b *reconnectBook) targets(v cluster.View, self string, seeds []string, now time.Time, timeout time.Duration, max int) (addrs []string, gaveUp int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in := make(map[string]bool, len(v.Members))
	var dead []string
	for _, m := range v.Members {
		in[m.ID] = true
		if m.Local || m.State != cluster.StateDead {
			continue
		}
		since, ok := b.deadSince[m.ID]
		if !ok { // dead before this book heard of it: from now
			since = now
			b.deadSince[m.ID] = now
		}
		if now.Sub(since) > timeout {
			if !b.gaveUp[m.ID] {
				b.gaveUp[m.ID] = true
				gaveUp++
			}
			continue
		}
		dead = append(dead, m.ID)
	}
	if len(b.addr) > b.maxAddrs {
		for id := range b.addr {
			if !in[id] {
				delete(b.addr, id)
			}
		}
	}
	for id := range b.deadSince {
		if !in[id] {
			delete(b.deadSince, id)
			delete(b.gaveUp, id)
		}
	}
	if len(dead) == 0 {
		return nil, gaveUp
	}
	seen := map[string]bool{self: true, "": true}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, id := range dead { // sorted: the view is
		add(b.addr[id])
	}
	for _, s := range seeds {
		add(s)
	}
	if len(addrs) > max {
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		addrs = addrs[:max]
		slices.Sort(addrs)
	}
	return addrs, gaveUp
}

// jitter spreads d over ±25%, so that the nodes of a healed partition do
// not all try at once.
func jitter(d time.Duration) time.Duration {
	return d - d/4 + rand.N(d/2+1)
}

func (n *Node) reconnectLoop() {
	defer n.wg.Done()
	for {
		t := time.NewTimer(jitter(n.cfg.ReconnectInterval))
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		n.reconnectRound()
	}
}

// reconnectRound tries the current targets, each on its own goroutine
// (bounded by maxReconnectAttempts), and waits for them all: so Shutdown,
// which waits for this loop, may wait for an attempt at an unreachable
// address up to memberlist's TCP timeout (10 s), as it does for the seeds'
// join retries.
func (n *Node) reconnectRound() {
	addrs, gaveUp := n.recon.targets(n.Members(), n.GossipAddr(), n.cfg.Seeds, time.Now(), n.cfg.ReconnectTimeout, maxReconnectAttempts)
	if gaveUp > 0 {
		n.count(func(s *Stats) { s.ReconnectGaveUp += uint64(gaveUp) })
		n.log.Warn("cluster: stopped trying dead members", "count", gaveUp, "after", n.cfg.ReconnectTimeout)
	}
	if len(addrs) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.ml.Join([]string{a})
			n.count(func(s *Stats) {
				s.ReconnectAttempts++
				if err != nil {
					s.ReconnectFailures++
				}
			})
			// Debug: a seed that is alive answers every round while a
			// member stays dead; a member back is logged as its change.
			n.log.Debug("cluster: reconnect attempt", "addr", a, "err", err)
		}()
	}
	wg.Wait()
}
