// Package retain keeps the retained message of each topic, per tenant, and
// finds those a new subscription's filter matches.
//
// # Contract
//
// Store is the interface the broker uses; Memory is the in-memory
// implementation (the Pebble and raft stores implement the same interface).
// Messages given to Set must be owned and are never modified; Match hands
// them out for reading. Match visits topics in byte order, so its output is
// deterministic. Memory is safe for concurrent use.
package retain

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
)

// Store holds retained messages.
type Store interface {
	// Set makes m the retained message of its topic in tenant; a message
	// with an empty payload deletes it instead [MQTT-3.3.1-6]. It returns
	// the change in the tenant's count of retained messages (-1, 0, +1).
	Set(tenant string, m *message.Message) int
	// Match calls visit with each retained message whose topic matches
	// filter, skipping (and forgetting) expired ones, until visit returns false.
	Match(tenant string, filter []byte, now time.Time, visit func(*message.Message) bool)
	// Count returns the number of retained messages of tenant and their bytes.
	Count(tenant string) (messages, bytes int)
}

// Memory is a Store in memory.
type Memory struct {
	mu      sync.RWMutex
	tenants map[string]*tree
}

type tree struct {
	root  node
	count int
	bytes int
}

type node struct {
	children map[string]*node
	msg      *message.Message
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{tenants: map[string]*tree{}} }

// Set implements Store.
func (s *Memory) Set(tenant string, m *message.Message) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if t == nil {
		if len(m.Payload) == 0 {
			return 0
		}
		t = &tree{}
		s.tenants[tenant] = t
	}
	levels := strings.Split(string(m.Topic), "/")
	if len(m.Payload) == 0 {
		return t.remove(&t.root, levels)
	}
	n := &t.root
	for _, l := range levels {
		c := n.children[l]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			c = &node{}
			n.children[l] = c
		}
		n = c
	}
	delta := 0
	if n.msg == nil {
		delta = 1
		t.count++
	} else {
		t.bytes -= n.msg.Size()
	}
	t.bytes += m.Size()
	n.msg = m
	return delta
}

// remove deletes the message at levels below n and prunes empty nodes.
func (t *tree) remove(n *node, levels []string) int {
	if len(levels) == 0 {
		if n.msg == nil {
			return 0
		}
		t.count--
		t.bytes -= n.msg.Size()
		n.msg = nil
		return -1
	}
	c := n.children[levels[0]]
	if c == nil {
		return 0
	}
	d := t.remove(c, levels[1:])
	if c.msg == nil && len(c.children) == 0 {
		delete(n.children, levels[0])
	}
	return d
}

// Match implements Store.
func (s *Memory) Match(tenant string, filter []byte, now time.Time, visit func(*message.Message) bool) {
	s.mu.RLock()
	t := s.tenants[tenant]
	var found []*message.Message
	if t != nil {
		levels := strings.Split(string(filter), "/")
		walk(&t.root, levels, true, &found)
	}
	s.mu.RUnlock()
	var expired []*message.Message
	for _, m := range found {
		if m.Expired(now) {
			expired = append(expired, m)
			continue
		}
		if !visit(m) {
			break
		}
	}
	for _, m := range expired {
		s.forget(tenant, m)
	}
}

// forget deletes m if it is still the topic's retained message.
func (s *Memory) forget(tenant string, m *message.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if t == nil {
		return
	}
	n := &t.root
	levels := strings.Split(string(m.Topic), "/")
	for _, l := range levels {
		if n = n.children[l]; n == nil {
			return
		}
	}
	if n.msg == m {
		t.remove(&t.root, levels)
	}
}

// walk collects the messages below n matching the filter levels. first
// says whether n is the root, where wildcards do not match topics that
// begin with '$' [MQTT-4.7.2-1].
func walk(n *node, levels []string, first bool, out *[]*message.Message) {
	if len(levels) == 0 {
		if n.msg != nil {
			*out = append(*out, n.msg)
		}
		return
	}
	switch l := levels[0]; l {
	case "#":
		// '#' matches the parent level too: "a/#" matches "a".
		if !first && n.msg != nil {
			*out = append(*out, n.msg)
		}
		collectAll(n, first, out)
	case "+":
		for _, k := range sortedKeys(n.children) {
			if first && strings.HasPrefix(k, "$") {
				continue
			}
			walk(n.children[k], levels[1:], false, out)
		}
	default:
		if c := n.children[l]; c != nil {
			walk(c, levels[1:], false, out)
		}
	}
}

func collectAll(n *node, first bool, out *[]*message.Message) {
	for _, k := range sortedKeys(n.children) {
		if first && strings.HasPrefix(k, "$") {
			continue
		}
		c := n.children[k]
		if c.msg != nil {
			*out = append(*out, c.msg)
		}
		collectAll(c, false, out)
	}
}

func sortedKeys(m map[string]*node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Count implements Store.
func (s *Memory) Count(tenant string) (int, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tenants[tenant]; t != nil {
		return t.count, t.bytes
	}
	return 0, 0
}
