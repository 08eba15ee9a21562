package routes

import (
	"bytes"
	"container/list"
	"maps"
	"slices"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Options bound a Cache.
type Options struct {
	// Self is this node's id: its routes are in the store too, and a
	// shared group may be picked for it.
	Self string
	// MaxPrefixes bounds the prefixes cached (0: 4096, at least 3); the
	// least recently matched is evicted.
	MaxPrefixes int
	// MaxBuffered bounds the events buffered for a loading prefix (0:
	// 10000); beyond, the prefix loads again.
	MaxBuffered int
}

// Event is a change of a watched prefix (impl/raftkv's WatchEvent).
type Event struct {
	Reset    bool   // events may have been missed: scan the prefix again
	Key, End []byte // End non-nil: every key in [Key, End) was deleted
	Value    []byte
	Deleted  bool
}

// KV is a key and its value, as a scan returns them.
type KV struct{ Key, Value []byte }

// Actions are what the runtime must do for the cache: watch the new
// prefixes (then scan each on its Reset, and call Loaded), stop watching
// evicted ones.
type Actions struct {
	Watch, Unwatch [][]byte
}

// Destination is a node a message goes to, and why: it holds plain
// subscriptions that match, or it was picked for shared groups (their
// $share/group/filter names), whose members it must choose among.
type Destination struct {
	Node   string
	Plain  bool
	Groups []string
}

// Stats are a Cache's counters.
type Stats struct {
	Prefixes, Ready int    // cached now, and of those ready
	Evicted         uint64 // prefixes evicted for room
	Overflows       uint64 // loading prefixes that buffered too many events
	Reloads         uint64 // Resets of ready prefixes (the store's or an overflow)
	BadKeys         uint64 // keys or values that did not decode (ignored)
}

type prefix struct {
	key    string
	tenant string
	ready  bool
	buf    []Event
	routes map[string]Route // by key: what the trie holds for this prefix
	elem   *list.Element
}

// Cache is a node's view of the routes it needs.
type Cache struct {
	opt      Options
	prefixes map[string]*prefix
	lru      *list.List // *prefix, most recently matched first
	tries    map[string]*topic.Trie
	nodes    map[string]topic.SubscriberID
	names    []string // by SubscriberID
	refs     []int
	free     []topic.SubscriberID
	act      Actions
	stats    Stats
	m        topic.Matches
	pbuf     []byte
}

// NewCache returns an empty cache.
func NewCache(opt Options) *Cache {
	if opt.MaxPrefixes <= 0 {
		opt.MaxPrefixes = 4096
	}
	// A publish needs up to three prefixes at once: none of them may
	// evict another.
	opt.MaxPrefixes = max(opt.MaxPrefixes, 3)
	if opt.MaxBuffered <= 0 {
		opt.MaxBuffered = 10000
	}
	return &Cache{opt: opt, prefixes: map[string]*prefix{}, lru: list.New(), tries: map[string]*topic.Trie{},
		nodes: map[string]topic.SubscriberID{}}
}

// TakeActions returns what the runtime must do, and forgets it.
func (c *Cache) TakeActions() Actions {
	a := c.act
	c.act = Actions{}
	return a
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := c.stats
	s.Prefixes = len(c.prefixes)
	for _, p := range c.prefixes {
		if p.ready {
			s.Ready++
		}
	}
	return s
}

// Match returns where a message to topicName in tenant goes: every node
// with matching plain subscriptions, and for each matching shared group
// one node holding members, picked round robin among those alive accepts
// (nil: all). Self is among them when it qualifies. complete is false
// when a prefix the topic needs is not ready (it is then being watched:
// see TakeActions); the answer lacks its routes.
func (c *Cache) Match(tenant string, topicName []byte, alive func(node string) bool, dst []Destination) (_ []Destination, complete bool) {
	complete = true
	levels, n := prefixLevels(topicName)
	for _, l := range levels[:n] {
		// Prefixes' keys, built in a reused buffer: looking one up
		// allocates nothing; only a new prefix is copied.
		c.pbuf = appendPrefix(c.pbuf[:0], tenant, l)
		p := c.prefixes[string(c.pbuf)]
		if p == nil {
			p = c.add(string(c.pbuf), tenant)
		} else {
			c.lru.MoveToFront(p.elem)
		}
		complete = complete && p.ready
	}
	t := c.tries[tenant]
	if t == nil {
		return dst, complete
	}
	c.m.Reset()
	t.Match(topicName, &c.m)
	start := len(dst)
	at := func(node string) *Destination {
		for i := start; i < len(dst); i++ {
			if dst[i].Node == node {
				return &dst[i]
			}
		}
		dst = append(dst, Destination{Node: node})
		return &dst[len(dst)-1]
	}
	for _, s := range c.m.Subs {
		if name := c.names[s.Subscriber]; alive == nil || alive(name) {
			at(name).Plain = true
		}
	}
	var ok func(topic.SubscriberID) bool
	if alive != nil {
		ok = func(id topic.SubscriberID) bool { return alive(c.names[id]) }
	}
	for _, g := range c.m.Groups {
		if s, found := g.Pick(topic.RoundRobin, 0, nil, ok); found {
			d := at(c.names[s.Subscriber])
			d.Groups = append(d.Groups, "$share/"+g.Name()+"/"+g.Filter())
		}
	}
	slices.SortFunc(dst[start:], func(a, b Destination) int { return strings.Compare(a.Node, b.Node) })
	return dst, complete
}

// Holds says what the cache knows of a route key: whether its prefix is
// cached (and then whether it is ready), and whether the key is in it.
func (c *Cache) Holds(key []byte) (cached, ready, present bool) {
	pk, ok := PrefixOf(key)
	if !ok {
		return false, false, false
	}
	p := c.prefixes[string(pk)]
	if p == nil {
		return false, false, false
	}
	_, present = p.routes[string(key)]
	return true, p.ready, present
}

// add starts caching a prefix (loading until its scan is installed),
// evicting the least recently matched beyond the bound.
func (c *Cache) add(key, tenant string) *prefix {
	for len(c.prefixes) >= c.opt.MaxPrefixes {
		old := c.lru.Back().Value.(*prefix)
		c.drop(old)
		c.stats.Evicted++
		c.act.Unwatch = append(c.act.Unwatch, []byte(old.key))
	}
	p := &prefix{key: key, tenant: tenant, routes: map[string]Route{}}
	p.elem = c.lru.PushFront(p)
	c.prefixes[key] = p
	c.act.Watch = append(c.act.Watch, []byte(key))
	return p
}

// drop forgets a prefix and its routes.
func (c *Cache) drop(p *prefix) {
	c.clear(p)
	c.lru.Remove(p.elem)
	delete(c.prefixes, p.key)
}

// clear removes a prefix's routes from its tenant's trie.
func (c *Cache) clear(p *prefix) {
	for _, k := range slices.Sorted(maps.Keys(p.routes)) {
		c.unroute(p, k)
	}
}

// Event applies a change of a watched prefix, or buffers it while the
// prefix loads. A Reset sends the prefix back to loading: the runtime
// scans it and calls Loaded.
func (c *Cache) Event(prefixKey []byte, ev Event) {
	p := c.prefixes[string(prefixKey)]
	if p == nil {
		return // evicted meanwhile
	}
	if ev.Reset {
		if p.ready {
			c.stats.Reloads++
		}
		p.ready, p.buf = false, p.buf[:0]
		return
	}
	if !p.ready {
		if len(p.buf) >= c.opt.MaxBuffered {
			// Too much to keep: read the prefix again instead.
			c.stats.Overflows++
			p.buf = p.buf[:0]
			c.act.Unwatch = append(c.act.Unwatch, []byte(p.key))
			c.act.Watch = append(c.act.Watch, []byte(p.key))
			return
		}
		p.buf = append(p.buf, Event{Key: bytes.Clone(ev.Key), End: bytes.Clone(ev.End), Value: bytes.Clone(ev.Value), Deleted: ev.Deleted})
		return
	}
	c.apply(p, ev)
}

// Loaded installs a loading prefix's scan, then the events buffered since
// its Reset, and makes it ready. A scan of a prefix not loading (evicted,
// or ready again) is ignored.
func (c *Cache) Loaded(prefixKey []byte, kvs []KV) {
	p := c.prefixes[string(prefixKey)]
	if p == nil || p.ready {
		return
	}
	c.clear(p)
	for _, kv := range kvs {
		c.apply(p, Event{Key: kv.Key, Value: kv.Value})
	}
	for _, ev := range p.buf {
		c.apply(p, ev)
	}
	p.buf = p.buf[:0]
	p.ready = true
}

// apply puts or deletes routes of p.
func (c *Cache) apply(p *prefix, ev Event) {
	if ev.End != nil {
		var gone []string
		for k := range p.routes {
			if k >= string(ev.Key) && k < string(ev.End) {
				gone = append(gone, k)
			}
		}
		slices.Sort(gone)
		for _, k := range gone {
			c.unroute(p, k)
		}
		return
	}
	if !bytes.HasPrefix(ev.Key, []byte(p.key)) {
		c.stats.BadKeys++
		return
	}
	if ev.Deleted {
		c.unroute(p, string(ev.Key))
		return
	}
	r, err := ParseKey(ev.Key)
	if err != nil || r.Tenant != p.tenant {
		c.stats.BadKeys++
		return
	}
	if r.Count, err = ParseValue(ev.Value); err != nil {
		c.stats.BadKeys++
		return
	}
	if r.Count == 0 {
		c.unroute(p, string(ev.Key))
		return
	}
	if old, ok := p.routes[string(ev.Key)]; ok {
		old.Count = r.Count
		p.routes[string(ev.Key)] = old
		return
	}
	t := c.tries[p.tenant]
	if t == nil {
		t = topic.NewTrie()
		c.tries[p.tenant] = t
	}
	t.Subscribe(trieFilter(r), topic.Subscription{Subscriber: c.node(r.Node)})
	p.routes[string(ev.Key)] = r
}

// unroute removes one route of p.
func (c *Cache) unroute(p *prefix, key string) {
	r, ok := p.routes[key]
	if !ok {
		return
	}
	delete(p.routes, key)
	t := c.tries[p.tenant]
	id := c.nodes[r.Node]
	t.Unsubscribe(trieFilter(r), id)
	if t.Len() == 0 {
		delete(c.tries, p.tenant)
	}
	c.refs[id]--
	if c.refs[id] == 0 {
		delete(c.nodes, r.Node)
		c.names[id] = ""
		c.free = append(c.free, id)
	}
}

// node returns the trie's id for a node name, counting one more use.
func (c *Cache) node(name string) topic.SubscriberID {
	id, ok := c.nodes[name]
	if !ok {
		if n := len(c.free); n > 0 {
			id, c.free = c.free[n-1], c.free[:n-1]
			c.names[id] = name
		} else {
			id = topic.SubscriberID(len(c.names))
			c.names = append(c.names, name)
			c.refs = append(c.refs, 0)
		}
		c.nodes[name] = id
	}
	c.refs[id]++
	return id
}

func trieFilter(r Route) []byte {
	if r.Group == "" {
		return []byte(r.Filter)
	}
	return []byte("$share/" + r.Group + "/" + r.Filter)
}
