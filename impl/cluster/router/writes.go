package router

import (
	"context"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/cluster/routes"
)

// writeQueue holds the keys (routes, retained messages, connection
// counts) whose stored state differs from what this node wants: the
// latest wish per key wins, one write per key runs at a time, so the
// store ends with the latest wish whatever the order the writes finish
// in.
type writeQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	want     map[string][]byte // key → value (nil: delete); only keys not yet written
	order    []string          // keys of want, oldest first
	inflight map[string]bool
	closed   bool

	writes, errors uint64
}

func (q *writeQueue) init() {
	q.cond = sync.NewCond(&q.mu)
	q.want = map[string][]byte{}
	q.inflight = map[string]bool{}
}

func (q *writeQueue) put(key string, value []byte) {
	q.mu.Lock()
	if _, queued := q.want[key]; !queued {
		q.order = append(q.order, key)
	}
	q.want[key] = value
	q.mu.Unlock()
	q.cond.Broadcast()
}

// take returns the oldest key not being written, waiting for one; ok is
// false once closed.
func (q *writeQueue) take() (key string, value []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return "", nil, false
		}
		for i, k := range q.order {
			if q.inflight[k] {
				continue
			}
			q.order = append(q.order[:i:i], q.order[i+1:]...)
			value = q.want[k]
			delete(q.want, k)
			q.inflight[k] = true
			return k, value, true
		}
		q.cond.Wait()
	}
}

// done ends a write; a failed one is queued again unless a newer wish
// replaced it.
func (q *writeQueue) done(key string, value []byte, err error) {
	q.mu.Lock()
	delete(q.inflight, key)
	if err != nil {
		q.errors++
		if _, newer := q.want[key]; !newer {
			q.want[key] = value
			q.order = append(q.order, key)
		}
	} else {
		q.writes++
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pending reports whether key waits or is being written.
func (q *writeQueue) pending(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, waits := q.want[key]
	return waits || q.inflight[key]
}

// idle reports whether nothing waits or runs.
func (q *writeQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.want) == 0 && len(q.inflight) == 0
}

func (q *writeQueue) stats() (writes, errors uint64, pending int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.writes, q.errors, len(q.want) + len(q.inflight)
}

func (q *writeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// RouteAdded implements broker.Cluster: the route is written in the
// background.
func (r *Router) RouteAdded(tenant, filter string) { r.route(tenant, filter, true) }

// RouteRemoved implements broker.Cluster.
func (r *Router) RouteRemoved(tenant, filter string) { r.route(tenant, filter, false) }

func (r *Router) route(tenant, filter string, present bool) {
	k, ok := r.routeKey(tenant, filter)
	if !ok {
		return
	}
	if !present {
		// Not visible from now on: a later subscription waits for its
		// own write and confirmations.
		r.mu.Lock()
		delete(r.visible, string(k))
		r.mu.Unlock()
	}
	var v []byte
	if present {
		v = routes.Value(1)
	}
	r.writes.put(string(k), v)
}

// routeKey is the key of this node's route for filter in tenant; false
// for $SYS filters (each node's own) and names a key cannot hold.
func (r *Router) routeKey(tenant, filter string) ([]byte, bool) {
	if len(filter) >= 4 && filter[:4] == "$SYS" {
		return nil, false
	}
	k, err := routes.Key(routes.Route{Tenant: tenant, Filter: filter, Node: r.cfg.Self})
	if err != nil {
		r.log.Warn("no route for this filter", "tenant", tenant, "filter", filter, "err", err)
		return nil, false
	}
	return k, true
}

// writer carries out route writes until the router closes, retrying a
// failed write after a pause.
func (r *Router) writer() {
	defer r.wg.Done()
	for {
		key, value, ok := r.writes.take()
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		var err error
		if value != nil {
			err = r.cfg.KV.Put(ctx, []byte(key), value)
		} else {
			err = r.cfg.KV.Delete(ctx, []byte(key))
		}
		cancel()
		if err != nil {
			r.log.Debug("route write failed", "err", err)
			sleep(r.ctx, 100*time.Millisecond)
		}
		r.writes.done(key, value, err)
		if err == nil && isRouteKey(key) {
			r.written(key, value != nil)
		}
	}
}

// RoutesWritten waits until every route and retained message change so
// far is in the store.
func (r *Router) RoutesWritten(ctx context.Context) error {
	for !r.writes.idle() {
		if !sleep(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// ClearOwnKeys deletes every route key and connection count this node
// wrote in an earlier run (a restart forgets which sessions and clients
// were here; the sessions that survive in the store subscribe again as
// they recover). Call it before the broker recovers its sessions and
// before the node joins the membership.
func (r *Router) ClearOwnKeys(ctx context.Context) (int, error) {
	n, err := r.clearOwn(ctx, routes.AllPrefix(), func(k []byte) bool {
		rt, err := routes.ParseKey(k)
		return err == nil && rt.Node == r.cfg.Self
	})
	if err != nil {
		return n, err
	}
	m, err := r.clearOwn(ctx, []byte{connTag}, func(k []byte) bool {
		_, node, ok := parseConnKey(k)
		return ok && node == r.cfg.Self
	})
	return n + m, err
}
