package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// forwarder sends one direction's queue to its sink, in queue order, with
// at most window QoS 1 messages awaiting their PUBACK. A message leaves
// the queue when the sink acknowledged it (or when it is dropped: expired,
// too large, refused). When the sink's connection ends, whatever was in
// flight is sent again from the oldest message still queued.
type forwarder struct {
	l    *link
	dir  int
	sink *endpoint
	max  int // configured window

	wake chan struct{}

	mu       sync.Mutex
	gen      uint64 // the sink connection messages go out on; 0 while down
	lim      limits
	window   int
	next     uint64 // the next queue seq to send; 0: from the oldest
	inflight map[uint64]struct{}
	paused   bool      // a transient refusal: wait, then send again from the oldest
	resumeAt time.Time // when paused
	timer    *time.Timer

	forwarded atomic.Uint64
}

func newForwarder(l *link, dir int, sink *endpoint, max int) *forwarder {
	return &forwarder{l: l, dir: dir, sink: sink, max: max, wake: make(chan struct{}, 1), inflight: map[uint64]struct{}{}}
}

func (f *forwarder) signal() { signal(f.wake) }

func (f *forwarder) up(gen uint64, lim limits) {
	f.mu.Lock()
	f.gen, f.lim = gen, lim
	f.window = max(1, min(f.max, lim.receiveMax))
	f.next = 0
	clear(f.inflight)
	f.paused = false
	f.mu.Unlock()
	f.signal()
}

func (f *forwarder) down(gen uint64) {
	f.mu.Lock()
	if f.gen == gen {
		f.gen = 0
		clear(f.inflight)
	}
	f.mu.Unlock()
}

// Reason codes of a PUBACK after which the same message is worth sending
// again later: the receiver is short of resources, not refusing it.
func transient(code byte) bool {
	return code == 0x97 /* quota exceeded */ || code == 0x89 /* server busy */
}

// acked is the sink's answer to a QoS 1 message of connection gen.
func (f *forwarder) acked(gen, seq uint64, code byte) {
	switch {
	case code < 0x80:
		// Success, or 0x10 (no matching subscribers): delivered as far as
		// MQTT goes. An answer from an older connection still counts.
		f.l.q.remove(f.dir, seq, &f.forwarded)
	case transient(code):
		f.mu.Lock()
		if f.gen == gen && !f.paused {
			f.paused = true
			f.resumeAt = time.Now().Add(f.sink.cfg.ReconnectMin)
			f.l.log.Warn("bridge: receiver short of resources, pausing", "direction", dirName[f.dir], "reason", hexCode(code), "for", f.sink.cfg.ReconnectMin)
		}
		f.mu.Unlock()
	default:
		if f.l.q.remove(f.dir, seq, &f.l.drops[f.dir][dropRejected]) {
			f.l.dropped(f.dir, dropRejected, "the receiver refused it: PUBACK "+hexCode(code))
		}
	}
	f.mu.Lock()
	if f.gen == gen {
		delete(f.inflight, seq)
	}
	f.mu.Unlock()
	f.signal()
}

func (f *forwarder) run(ctx context.Context) {
	defer func() {
		f.mu.Lock()
		if f.timer != nil {
			f.timer.Stop()
		}
		f.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		for ctx.Err() == nil && f.pump() {
		}
	}
}

// pump sends what the window allows; it reports whether it made progress
// and may be called again at once.
func (f *forwarder) pump() bool {
	f.mu.Lock()
	if f.gen == 0 {
		f.mu.Unlock()
		return false
	}
	if f.paused {
		if len(f.inflight) > 0 {
			f.mu.Unlock()
			return false // the rest of the round must be answered first
		}
		if wait := time.Until(f.resumeAt); wait > 0 {
			if f.timer == nil {
				f.timer = time.AfterFunc(wait, f.signal)
			} else {
				f.timer.Reset(wait)
			}
			f.mu.Unlock()
			return false
		}
		f.paused = false
		f.next = 0 // send again from the oldest message still queued
	}
	room := f.window - len(f.inflight)
	gen, lim, from := f.gen, f.lim, f.next
	f.mu.Unlock()
	if room <= 0 {
		return false
	}
	recs, damaged, err := f.l.q.read(f.dir, from, room, &f.l.drops[f.dir][dropCorrupt])
	for range damaged {
		f.l.dropped(f.dir, dropCorrupt, "")
	}
	if err != nil {
		f.l.log.Error("bridge queue read failed", "direction", dirName[f.dir], "err", err)
	}
	if len(recs) == 0 {
		return false
	}
	now := time.Now().UnixNano()
	for _, r := range recs {
		qos := min(r.qos, lim.maxQoS, 1)
		retain := r.retain && lim.retain
		var why string
		var reason int
		switch {
		case r.expiry != 0 && now >= r.expiry:
			reason, why = dropExpired, ""
		case lim.maxPacket > 0 && packetSize(r) > int(lim.maxPacket):
			reason, why = dropTooLarge, "larger than the receiver's Maximum Packet Size"
		default:
			reason = -1
		}
		f.mu.Lock()
		if f.gen != gen || f.paused {
			f.mu.Unlock()
			return false
		}
		f.next = r.seq + 1
		if reason < 0 && qos > 0 {
			f.inflight[r.seq] = struct{}{}
		}
		f.mu.Unlock()
		if reason >= 0 {
			if f.l.q.remove(f.dir, r.seq, &f.l.drops[f.dir][reason]) {
				f.l.dropped(f.dir, reason, why)
			}
			continue
		}
		err := f.sink.publish(gen, r, qos, retain)
		switch {
		case err == nil && qos == 0:
			f.l.q.remove(f.dir, r.seq, &f.forwarded)
		case err == nil:
		case errors.Is(err, errRejected):
			f.mu.Lock()
			delete(f.inflight, r.seq)
			f.mu.Unlock()
			if f.l.q.remove(f.dir, r.seq, &f.l.drops[f.dir][dropRejected]) {
				f.l.dropped(f.dir, dropRejected, err.Error())
			}
		default:
			// The connection is failing. Make sure it ends, so that its
			// down and the next up send everything again from the oldest.
			f.mu.Lock()
			delete(f.inflight, r.seq)
			f.mu.Unlock()
			f.sink.kick(gen)
			return false
		}
	}
	return true
}

// packetSize estimates the encoded PUBLISH (5.0) of r, for the receiver's
// Maximum Packet Size.
func packetSize(r *record) int {
	n := 2 + len(r.topic) + 2 + len(r.payload) + 16 + len(r.contentType) + len(r.responseTopic) + len(r.correlationData)
	for _, u := range r.user {
		n += 5 + len(u.key) + len(u.value)
	}
	return n + 5
}
