package router

import (
	"encoding/binary"

	"github.com/skybridge-mq/skybridge/impl/cluster/routes"
	"github.com/skybridge-mq/skybridge/impl/forward"
	"github.com/skybridge-mq/skybridge/impl/message"
)

// Retained messages (docs/CLUSTER.md): raftkv holds each tenant's
// retained message per topic, under
//
//	'm' | uvarint(len(tenant)) | tenant | topic  →  a forward record (the message)
//
// and every node keeps a copy of all of them in its own retained store
// (as a single node does), following the 'm' prefix by a watch: a node
// that sets one writes it to raftkv, and every node (itself included)
// applies it when the watch says so. Two nodes setting one topic at once
// end, everywhere, with the one raftkv ordered last.
const retainedTag = 'm'

func isRouteKey(key string) bool { return len(key) > 0 && key[0] == routes.AllPrefix()[0] }

func retainedKey(tenant string, topicName []byte) []byte {
	k := binary.AppendUvarint([]byte{retainedTag}, uint64(len(tenant)))
	return append(append(k, tenant...), topicName...)
}

// RetainedSet implements broker.Cluster: m becomes the retained message
// of its topic in every node (an empty payload deletes it), in the
// background.
func (r *Router) RetainedSet(tenant string, m *message.Message) {
	k := retainedKey(tenant, m.Topic)
	if len(m.Payload) == 0 {
		r.writes.put(string(k), nil)
		return
	}
	v, err := forward.AppendRecord(nil, tenant, m, forward.Everyone)
	if err != nil {
		r.log.Warn("retained message not stored in the cluster", "tenant", tenant, "topic", string(m.Topic), "err", err)
		return
	}
	r.writes.put(string(k), v)
}

// FollowRetained starts applying the cluster's retained messages to this
// node through Config.Retained: all of them first, then every change.
// Call it once, when the broker can take them (after its recovery); the
// channel closes once all of them were applied.
func (r *Router) FollowRetained() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := make(chan struct{})
	if r.closed || r.cfg.Retained == nil {
		close(first)
		return first
	}
	r.wg.Add(1)
	go r.follow(r.ctx, []byte{retainedTag}, &retainedSink{r: r, applied: map[string]bool{}, first: first})
	return first
}

// retainedSink applies the cluster's retained messages to this node's
// store (Config.Retained), and remembers which keys it applied so that
// a reload can delete those gone meanwhile.
type retainedSink struct {
	r       *Router
	applied map[string]bool // keys applied and not deleted since
	first   chan struct{}   // closed after the first load
}

func (s *retainedSink) reset() bool { return s.r.ctx.Err() == nil }

func (s *retainedSink) loaded(kvs []routes.KV) bool {
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		seen[string(kv.Key)] = true
		s.put(kv.Key, kv.Value)
	}
	for k := range s.applied {
		if !seen[k] {
			s.del([]byte(k))
		}
	}
	if s.first != nil {
		close(s.first)
		s.first = nil
	}
	return s.r.ctx.Err() == nil
}

func (s *retainedSink) event(ev routes.Event) bool {
	switch {
	case ev.End != nil:
		for k := range s.applied {
			if k >= string(ev.Key) && k < string(ev.End) {
				s.del([]byte(k))
			}
		}
	case ev.Deleted:
		s.del(ev.Key)
	default:
		s.put(ev.Key, ev.Value)
	}
	return s.r.ctx.Err() == nil
}

func (s *retainedSink) put(key, value []byte) {
	tenant, m, err := forward.DecodeRecord(value)
	if err != nil {
		s.r.badRetained.Add(1)
		return
	}
	m.Retain = true
	s.applied[string(key)] = true
	s.r.retainedApplied.Add(1)
	s.r.cfg.Retained(tenant, m)
}

func (s *retainedSink) del(key []byte) {
	tenant, topicName, ok := parseRetainedKey(key)
	if !ok {
		s.r.badRetained.Add(1)
		return
	}
	delete(s.applied, string(key))
	s.r.retainedApplied.Add(1)
	s.r.cfg.Retained(tenant, &message.Message{Topic: topicName, Retain: true})
}

func parseRetainedKey(k []byte) (tenant, topicName []byte, ok bool) {
	if len(k) < 2 || k[0] != retainedTag {
		return nil, nil, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)-1-w) <= n {
		return nil, nil, false
	}
	rest := k[1+w:]
	return rest[:n], rest[n:], true
}
