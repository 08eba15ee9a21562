package router

import (
	"context"
	"encoding/binary"

	"github.com/skybridge-mq/skybridge/impl/cluster"
	"github.com/skybridge-mq/skybridge/impl/cluster/routes"
)

// Connection counts (docs/CLUSTER.md, "Tenant connection limits"): each
// node keeps its number of connected clients per tenant in raftkv, under
//
//	'c' | uvarint(len(tenant)) | tenant | node  →  uvarint(count)
//
// (no key when the count is 0), written through the write queue, so a
// connect storm makes a few writes, not one per CONNECT: the latest count
// wins. Every node follows the 'c' prefix by a watch and adds the last
// known counts of the other live nodes to its own when a CONNECT meets
// the tenant's max_connections (broker.Cluster.ConnectionsElsewhere).
const connTag = 'c'

func connKey(tenant, node string) []byte {
	k := binary.AppendUvarint([]byte{connTag}, uint64(len(tenant)))
	return append(append(k, tenant...), node...)
}

func parseConnKey(k []byte) (tenant, node string, ok bool) {
	if len(k) < 2 || k[0] != connTag {
		return "", "", false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)-1-w) <= n {
		return "", "", false // a node id is never empty
	}
	rest := k[1+w:]
	return string(rest[:n]), string(rest[n:]), true
}

// ConnectionsChanged implements broker.Cluster: this node's count for
// tenant moves by delta, and the new count is written in the background
// (the latest count per key wins).
func (r *Router) ConnectionsChanged(tenant string, delta int) {
	r.cmu.Lock()
	defer r.cmu.Unlock() // the queue gets the counts in the order they were made
	n := r.connected[tenant] + int64(delta)
	var v []byte
	if n > 0 {
		r.connected[tenant] = n
		v = binary.AppendUvarint(nil, uint64(n))
	} else {
		delete(r.connected, tenant)
	}
	r.writes.put(string(connKey(tenant, r.cfg.Self)), v)
}

// ConnectionsElsewhere implements broker.Cluster: the sum of the last
// counts of tenant's clients that the other nodes wrote, over the nodes
// the membership knows and does not hold dead or gone (a suspect node
// still counts: it may be serving).
func (r *Router) ConnectionsElsewhere(tenant string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum int64
	for node, n := range r.remote[tenant] {
		if m, ok := r.members[node]; ok && node != r.cfg.Self && (m.State == cluster.StateAlive || m.State == cluster.StateSuspect) {
			sum += n
		}
	}
	return sum
}

// connSink keeps r.remote in step with the 'c' prefix.
type connSink struct{ r *Router }

func (s connSink) reset() bool { return s.r.ctx.Err() == nil } // the last counts stay until the scan

func (s connSink) loaded(kvs []routes.KV) bool {
	r := s.r
	counts := map[string]map[string]int64{}
	for _, kv := range kvs {
		s.set(counts, kv.Key, kv.Value)
	}
	r.mu.Lock()
	r.remote = counts
	r.mu.Unlock()
	return r.ctx.Err() == nil
}

func (s connSink) event(ev routes.Event) bool {
	r := s.r
	r.mu.Lock()
	switch {
	case ev.End != nil: // a range deleted
		for tenant, nodes := range r.remote {
			for node := range nodes {
				if k := string(connKey(tenant, node)); k >= string(ev.Key) && k < string(ev.End) {
					delete(nodes, node)
				}
			}
		}
	case ev.Deleted:
		s.set(r.remote, ev.Key, nil)
	default:
		s.set(r.remote, ev.Key, ev.Value)
	}
	r.mu.Unlock()
	return r.ctx.Err() == nil
}

// set applies one key's value (nil: deleted) to counts.
func (s connSink) set(counts map[string]map[string]int64, key, value []byte) {
	tenant, node, ok := parseConnKey(key)
	var n uint64
	if ok && value != nil {
		var w int
		n, w = binary.Uvarint(value)
		ok = w == len(value) && n <= 1<<62
	}
	if !ok {
		s.r.badCounts.Add(1)
		return
	}
	if value == nil || n == 0 {
		delete(counts[tenant], node)
		if len(counts[tenant]) == 0 {
			delete(counts, tenant)
		}
		return
	}
	if counts[tenant] == nil {
		counts[tenant] = map[string]int64{}
	}
	counts[tenant][node] = int64(n)
}

// followConnections starts following the other nodes' counts (New).
func (r *Router) followConnections() {
	r.wg.Add(1)
	go r.follow(r.ctx, []byte{connTag}, connSink{r})
}

// clearOwn deletes, in prefix, the keys that own (parsed) says are this
// node's; it returns how many went.
func (r *Router) clearOwn(ctx context.Context, prefix []byte, own func(key []byte) bool) (int, error) {
	kvs, err := r.scan(ctx, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		if !own(kv.Key) {
			continue
		}
		if err := r.cfg.KV.Delete(ctx, kv.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
