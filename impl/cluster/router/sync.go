package router

import (
	"encoding/binary"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
)

// The SUBACK guarantee (docs/CLUSTER.md): once a client has its SUBACK,
// a message published afterwards on any node reaches it. A route write
// committed in raftkv is not enough: another node's cache hears of it by
// a watch event some time later. So after writing a route key the
// subscribing node asks every live node to confirm that its cache holds
// the key (or does not cache its prefix: its first publish there scans
// the prefix, after the write), and AwaitRoutes waits for that.
//
// The question and the answer travel as records of a reserved tenant on
// the forward links (in order and resent like messages: QoS 1, no
// token). No MQTT tenant can take that name: tenant names are
// [A-Za-z0-9._-].
const ctlTenant = "\x00ctl"

// Control topics: a question carries its id and the key; the answer, the id.
var (
	topicSync   = []byte("sync")
	topicSynced = []byte("synced")
)

// syncing is one key's round of questions.
type syncing struct {
	id      uint64
	key     string
	waiting map[string]bool // nodes that have not answered
	timer   *time.Timer
}

// question is a sync another node asked this one, waiting for the cache.
type question struct {
	from  string
	id    uint64
	key   []byte
	since time.Time
}

// written is called by a writer once a route key's write succeeded.
func (r *Router) written(key string, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !present {
		delete(r.visible, key)
		return
	}
	if !r.writes.pending(key) {
		r.startSync(key)
	}
}

// startSync asks every live node about key (r.mu held).
func (r *Router) startSync(key string) {
	if old := r.syncs[key]; old != nil {
		old.timer.Stop()
		delete(r.syncByID, old.id)
	}
	r.nextSync++
	s := &syncing{id: r.nextSync, key: key, waiting: map[string]bool{}}
	payload := append(binary.AppendUvarint(nil, s.id), key...)
	for id := range r.members {
		if !r.alive(id) {
			continue
		}
		if p := r.peerLocked(id); p != nil && sendControl(p, topicSync, payload) == nil {
			s.waiting[id] = true
		}
	}
	if len(s.waiting) == 0 {
		delete(r.syncs, key)
		r.visible[key] = true
		r.loaded.Broadcast()
		return
	}
	r.syncs[key], r.syncByID[s.id] = s, s
	s.timer = time.AfterFunc(r.cfg.SyncTimeout, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.syncByID[s.id] == s {
			delete(r.syncByID, s.id)
			delete(r.syncs, s.key)
			r.unconfirmed.Add(1)
			r.log.Warn("route not confirmed by every node in time", "nodes", len(s.waiting), "timeout", r.cfg.SyncTimeout)
			r.loaded.Broadcast()
		}
	})
}

// answered records a node's confirmation (r.mu held); a node that died
// or left counts as answered: it forwards nothing any more.
func (r *Router) answered(s *syncing, node string) {
	delete(s.waiting, node)
	if len(s.waiting) > 0 {
		return
	}
	s.timer.Stop()
	delete(r.syncByID, s.id)
	delete(r.syncs, s.key)
	r.visible[s.key] = true
	r.loaded.Broadcast()
}

// forgetNode ends the waits on a node that is gone (r.mu held).
func (r *Router) forgetNode(node string) {
	for _, s := range r.syncByID {
		if s.waiting[node] {
			r.answered(s, node)
		}
	}
}

// control handles a record of the reserved tenant from node from.
func (r *Router) control(from string, m *message.Message) {
	id, n := binary.Uvarint(m.Payload)
	if n <= 0 {
		r.log.Warn("bad control record", "from", from)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch string(m.Topic) {
	case string(topicSync):
		q := question{from: from, id: id, key: append([]byte(nil), m.Payload[n:]...), since: time.Now()}
		if !r.answer(&q) {
			r.questions = append(r.questions, q)
		}
	case string(topicSynced):
		if s := r.syncByID[id]; s != nil {
			r.answered(s, from)
		}
	case string(topicRelease):
		if !r.closed {
			r.wg.Add(1)
			go r.releaseAsked(from, append([]byte(nil), m.Payload...))
		}
	case string(topicReleased):
		r.releaseAnswered(m.Payload)
	}
}

// answer confirms a question if this node's cache is ready for the key
// (r.mu held), and reports whether it did.
func (r *Router) answer(q *question) bool {
	cached, ready, present := r.cache.Holds(q.key)
	if cached && !(ready && present) {
		return false
	}
	if p := r.peerLocked(q.from); p != nil {
		_ = sendControl(p, topicSynced, binary.AppendUvarint(nil, q.id))
	}
	return true
}

// answerWaiting retries the questions waiting for the cache (r.mu held),
// after it changed; those older than SyncTimeout are dropped (the asker
// stopped waiting).
func (r *Router) answerWaiting() {
	if len(r.questions) == 0 {
		return
	}
	now := time.Now()
	kept := r.questions[:0]
	for _, q := range r.questions {
		if !r.answer(&q) && now.Sub(q.since) < r.cfg.SyncTimeout {
			kept = append(kept, q)
		}
	}
	clear(r.questions[len(kept):])
	r.questions = kept
}

// AwaitRoutes implements broker.Cluster: it waits until every live node
// confirmed the routes of filters in tenant, bounded by SyncTimeout.
func (r *Router) AwaitRoutes(tenant string, filters [][]byte) {
	keys := make([]string, 0, len(filters))
	for _, f := range filters {
		if k, ok := r.routeKey(tenant, string(f)); ok {
			keys = append(keys, string(k))
		}
	}
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waitLocked(r.cfg.SyncTimeout, func() bool {
		done := true
		for _, k := range keys {
			if r.visible[k] {
				continue
			}
			done = false
			if r.syncs[k] == nil && !r.writes.pending(k) {
				r.startSync(k) // written earlier, its round timed out
			}
		}
		return done
	})
}
