package kvsim

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/sim"
)

// watcher is an application that keeps a cache of the registers (prefix
// "k") from a watch, as raftkv's watch contract says a cache should: on a
// Reset it buffers the events that follow, reads the prefix (scans, range
// by range), then applies the buffered events and every later one. A lost
// connection is a Reset. At the end of the run its cache must equal the
// store (watch-cache).
type watcher struct {
	w       *world
	host    *sim.Host
	ep      *sim.Endpoint
	node    *nodeProc // the node ep leads to
	in      raftkv.Framer
	cache   map[string]string
	reading bool                // a read after a Reset is under way
	buf     []raftkv.WatchEvent // events during that read
	scan    map[string]string   // what the read found so far
	scanID  uint64
	nextID  uint64
	resets  int
	timer   *sim.Event
}

const watchPrefix = "k"

func (w *world) newWatcher() {
	wt := &watcher{w: w, cache: map[string]string{}}
	wt.host = w.net.AddHost("watcher")
	w.watcher = wt
	w.s.After(w.s.Uniform(0, time.Second), wt.connect)
}

func (wt *watcher) connect() {
	cands := wt.w.active()
	p := cands[wt.w.s.Rand.IntN(len(cands))]
	wt.ep = wt.host.Dial(p.host.Name, portClient, wt)
	wt.node = p
	wt.in = raftkv.Framer{}
	wt.reading, wt.buf = false, nil
	wt.ep.Write(raftkv.AppendIDFrame(nil, raftkv.FrameWatch, 1, []byte(watchPrefix)))
}

func (wt *watcher) Opened(ep *sim.Endpoint) { ep.Write(nil) }
func (wt *watcher) Writable(*sim.Endpoint)  {}
func (wt *watcher) Closed(ep *sim.Endpoint, _ bool) {
	if ep != wt.ep {
		return
	}
	wt.ep = nil
	wt.w.s.Cancel(wt.timer)
	wt.w.s.After(wt.w.s.Uniform(100*time.Millisecond, time.Second), wt.connect)
}

func (wt *watcher) Data(ep *sim.Endpoint, b []byte) {
	ep.Consume(len(b))
	if ep != wt.ep {
		return
	}
	wt.in.Feed(b, func(kind byte, body []byte) {
		id, rest, ok := raftkv.SplitID(body)
		if !ok {
			return
		}
		switch kind {
		case raftkv.FrameWatchEvt:
			ev, err := raftkv.DecodeWatchEvent(id, rest)
			if err != nil {
				wt.w.fail("decode", err.Error())
				return
			}
			wt.event(ev)
		case raftkv.FrameResponse:
			resp, err := raftkv.DecodeResponse(rest)
			if err != nil {
				wt.w.fail("decode", err.Error())
				return
			}
			wt.scanned(id, resp)
		}
	})
}

func (wt *watcher) event(ev raftkv.WatchEvent) {
	if ev.Reset {
		wt.resets++
		wt.reading, wt.buf, wt.scan = true, nil, map[string]string{}
		wt.read([]byte(watchPrefix))
		return
	}
	if wt.reading {
		wt.buf = append(wt.buf, ev)
		return
	}
	wt.apply(wt.cache, ev)
}

func (wt *watcher) apply(m map[string]string, ev raftkv.WatchEvent) {
	switch {
	case ev.End != nil:
		for k := range m {
			if k >= string(ev.Key) && k < string(ev.End) {
				delete(m, k)
			}
		}
	case ev.Deleted:
		delete(m, string(ev.Key))
	default:
		m[string(ev.Key)] = string(ev.Value)
	}
}

// read scans the prefix from key (one range per request).
func (wt *watcher) read(from []byte) {
	wt.nextID++
	wt.scanID = wt.nextID
	req := &raftkv.Request{Kind: raftkv.ReqScan, Key: from, End: []byte("l")}
	wt.ep.Write(raftkv.AppendIDFrame(nil, raftkv.FrameRequest, wt.scanID, raftkv.EncodeRequest(req)))
	wt.w.s.Cancel(wt.timer)
	id := wt.scanID
	wt.timer = wt.w.s.After(wt.w.opts.ClientTimeout, func() {
		if wt.reading && wt.scanID == id && wt.ep != nil {
			wt.read(from) // ask again (a read has no effect)
		}
	})
}

func (wt *watcher) scanned(id uint64, resp *raftkv.Response) {
	if !wt.reading || id != wt.scanID {
		return
	}
	if resp.Err != nil {
		wt.w.s.After(100*time.Millisecond, func() {
			if wt.reading && wt.scanID == id && wt.ep != nil {
				wt.read([]byte(watchPrefix)) // start over: pages must be one read's
				wt.scan = map[string]string{}
			}
		})
		return
	}
	for _, kv := range resp.KVs {
		wt.scan[string(kv.Key)] = string(kv.Value)
	}
	if resp.Resume != nil {
		wt.read(resp.Resume)
		return
	}
	wt.w.s.Cancel(wt.timer)
	wt.cache = wt.scan
	for _, ev := range wt.buf {
		wt.apply(wt.cache, ev)
	}
	wt.reading, wt.buf = false, nil
}

// idle reports that the watcher has a cache to compare: it is not
// reading, and its node has its watch registered (a node re-registering
// a watch sends a Reset once done: until then the cache may be behind).
func (wt *watcher) idle() bool {
	if wt.ep == nil || wt.reading || wt.resets == 0 || wt.node == nil || !wt.node.up {
		return false
	}
	for sid, cr := range wt.node.watches { // any order: one matches
		if cr.ep.Conn == wt.ep.Conn {
			return wt.node.node.WatchReady(sid)
		}
	}
	return false
}

// checkCache compares the cache with the registers' content on the leaders.
func (w *world) checkCache() {
	wt := w.watcher
	if wt == nil {
		return
	}
	if !wt.idle() {
		w.fail("watch-cache", fmt.Sprintf("the watcher is not idle at the end (connected %v, reading %v, %d resets)", wt.ep != nil, wt.reading, wt.resets))
		return
	}
	// The store: each range's data at its leader (the check runs when
	// every range has one and its replicas agree: converged).
	truth := map[string]string{}
	for _, p := range w.up() {
		for _, lr := range p.node.Ranges() {
			if !lr.Leader || !lr.Desc.Initialized() {
				continue
			}
			kvs, err := p.node.RangeData(lr.Desc.RangeID)
			if err != nil {
				continue
			}
			for _, kv := range kvs {
				if k := string(kv.Key); strings.HasPrefix(k, "u"+watchPrefix) {
					truth[k[1:]] = string(kv.Value)
				}
			}
		}
	}
	if !maps.Equal(truth, wt.cache) {
		var diff []string
		for _, k := range slices.Sorted(maps.Keys(truth)) {
			if wt.cache[k] != truth[k] {
				diff = append(diff, fmt.Sprintf("%s: store %q cache %q", k, truth[k], wt.cache[k]))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(wt.cache)) {
			if _, ok := truth[k]; !ok {
				diff = append(diff, fmt.Sprintf("%s: store absent, cache %q", k, wt.cache[k]))
			}
		}
		w.fail("watch-cache", fmt.Sprintf("the watcher's cache differs from the store after %d resets: %s", wt.resets, strings.Join(diff, "; ")))
	}
}
