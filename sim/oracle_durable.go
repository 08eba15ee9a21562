package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// What a power loss may take from a durable broker, and what it may not.
//
// The disk keeps exactly the batches whose group commit completed (the
// shadow, durable.go). The broker promises, by what it sends, that some of
// its state is in them: the CONNACK of a persistent session waits for the
// session record, a SUBACK or UNSUBACK for the subscription change, a
// PUBACK or PUBREC for the queue entries (and retained message) the
// PUBLISH produced. At the restart the oracle
//
//   - checks the promises against the shadow (InvDurable): the session a
//     client holds a CONNACK for is there, and belongs to that session, not
//     an older one; acknowledged subscription changes are there;
//   - checks that the restarted broker recovered exactly the shadow
//     (InvDurable): the same sessions, subscriptions, queue lengths and
//     retained messages;
//   - continues from the shadow: each client's session is the one on disk
//     (its incarnation goes on, and its subscription history gets the disk's
//     state at the crash as an operation), wills on disk are armed as
//     Recover does, sessions not on disk are gone, and the retained history
//     gets the disk's value at the crash (which must be a value the
//     acknowledged and unacknowledged publishes allow).
//
// Everything else follows from the ordinary invariants: an acknowledged
// QoS 1/2 message must still reach every persistent session that matched it
// (at-least-once, exactly once for QoS 2, in order), across any number of
// crashes.
//
// A crash can also bring back a session the client had already replaced
// (its clean-start CONNECT was handled but not yet durable, so the client
// never got the CONNACK, or the new session lived in memory only). The
// client's own state no longer matches that session (its QoS 2 packet ids
// and unacknowledged messages belong to the other one), so that
// incarnation is lenient: no at-least-once or exactly-once requirement, no
// conclusion from a message not received. Result.Excused.Crash counts them.

// bsess is a broker-side session as the oracle models it: created by a
// CONNECT that found none (or asked for a clean start), resumed by later
// CONNECTs, ended by expiry, a clean start, or a crash that did not keep it.
type bsess struct {
	key string
	inc *Incarnation
	// durable: its Session Expiry was above 0 at its last CONNECT, so it
	// is journaled; promised: a client received a CONNACK on it (which the
	// broker sends only once the session record is durable), at promisedAt.
	durable, promised bool
	promisedAt        time.Time
	connID            uint64
}

// connectSeen links a CONNECT the broker accepted to its broker session.
// from is the number of store batches submitted before the CONNECT was
// handled: those submitted since then hold the session's record.
func (o *Oracle) connectSeen(cr *connRec, key string, resumed bool, from uint64, durable bool) {
	bs := o.bsCur[key]
	if bs == nil || !resumed {
		bs = &bsess{key: key, connID: cr.client.connIDOr0()}
		if c := cr.client; c != nil {
			bs.inc = c.inc
		}
		o.bsCur[key] = bs
		if ds := o.w.Broker.ds; ds != nil {
			ds.tagCreation(from, key, bs)
		}
	}
	bs.durable = durable
	cr.bs = bs
	o.refreshDropBaseline(key)
}

func (c *Client) connIDOr0() uint64 {
	if c == nil {
		return 0
	}
	return c.connID
}

// clientSession runs when a client has settled its incarnation after a
// CONNACK: the broker session of that connection is the client's.
func (o *Oracle) clientSession(c *Client) {
	cr := o.conns[c.connID]
	if cr == nil || cr.bs == nil {
		return
	}
	cr.bs.inc = c.inc
	if cr.bs.durable && !cr.bs.promised {
		cr.bs.promised, cr.bs.promisedAt = true, o.now()
	}
}

// lastCrash returns the instant of the latest crash.
func (o *Oracle) lastCrash() time.Time {
	if len(o.crashes) == 0 {
		return Epoch
	}
	return o.crashes[len(o.crashes)-1]
}

// ended reports whether the broker session bs had ended by t for a reason
// other than the crash: its connection ended with expiry 0, or it expired.
func (o *Oracle) ended(bs *bsess, s *sessModel, t time.Time) bool {
	if s == nil || !s.exists {
		return true
	}
	if s.attached != 0 || s.expiry == never {
		return false
	}
	return !t.Before(s.detachedAt.Add(s.expiry - time.Millisecond))
}

// brokerRecovering runs when the broker restarts after a power loss, before
// Recover: it checks the promises against the disk and continues the model
// from it.
func (o *Oracle) brokerRecovering() {
	sh := o.w.Broker.shadow
	now, crash := o.now(), o.lastCrash()
	o.qfBase = map[string]uint64{}
	// The retained value of every topic on disk, for the retained history.
	ret := make(map[string]uint64, len(sh.retained))
	for k, v := range sh.retained {
		ret[k] = v
	}
	o.crashRet = append(o.crashRet, ret)

	keys := make([]string, 0, len(sh.sess))
	for k, ss := range sh.sess {
		if ss.rec != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)

	// Sessions and their wills, as Recover rebuilds them.
	o.recoveryWills = 0
	for _, key := range keys {
		rec := sh.sess[key].rec
		since := recoveredSince(rec, now)
		s := &sessModel{exists: true, expiry: secs(rec.Expiry), detachedAt: since}
		o.sess[key] = s
		expired := s.expiry != never && !since.Add(s.expiry).After(now)
		var w *Msg
		if rec.Will != nil {
			id, _ := payloadID(rec.Will.Payload)
			w = o.msg(id)
			if w == nil || !w.Will || w.Tenant+"\x00"+w.Pub.Spec.ClientID != key {
				o.fail(InvDurable, fmt.Sprintf("the disk holds a will for %q that is not its client's (payload id %d)", key, id))
				return
			}
		}
		if expired {
			// Recover ends it at once, publishing its will.
			s.exists = false
			if w != nil {
				o.rearmWill(w, now, crash)
			}
			continue
		}
		if w != nil {
			d := min(time.Duration(rec.WillDelay)*time.Second, s.expiry)
			at := since.Add(d)
			if at.Before(now) {
				at = now
			}
			if o.rearmWill(w, at, crash) && at.After(now) {
				s.pendingWill = w
			}
		}
	}
	for _, m := range o.msgs {
		if m.Will && m.suspended {
			m.suspended = false // cancelled by the crash: its record on disk did not hold it
		}
	}

	// Each client's session: the promise, then the model goes on from the disk.
	before := o.sessAtCrash
	for _, c := range o.w.Clients {
		key := c.Spec.Tenant + "\x00" + c.Spec.ClientID
		cur := o.bsCur[key]
		ss := sh.sess[key]
		var surv *bsess
		if ss != nil && ss.rec != nil {
			surv = ss.bs
		}
		if o.w.Scenario.Debug != nil {
			if ss != nil {
				o.w.debugf("disk at the crash: %s: record %v, %d subscriptions, deliveries %s", c.Spec.ClientID, ss.rec != nil, len(ss.subs), describeDeliveries(ss))
			} else {
				o.w.debugf("disk at the crash: nothing for %s", c.Spec.ClientID)
			}
			if cur != nil {
				o.w.debugf("%s held session of connection %d: durable %v, promised %v, ended %v, survives %v", c.Spec.ClientID,
					cur.connID, cur.durable, cur.promised, o.ended(cur, before[key], crash), surv == cur)
			}
		}
		o.Checked[InvDurable]++
		if cur != nil && cur.durable && cur.promised && surv != cur && !o.ended(cur, before[key], crash) {
			what := "no session record"
			switch {
			case surv != nil:
				what = fmt.Sprintf("the record of an older session (created on connection %d)", surv.connID)
			case ss != nil:
				what = fmt.Sprintf("no session record, but %d subscriptions, %d queued messages and %d QoS 2 ids under its prefix",
					len(ss.subs), len(ss.deliv), len(ss.inbound))
			}
			o.fail(InvDurable, fmt.Sprintf("power loss at %s lost the persistent session of %s (created on connection %d, a CONNACK on it "+
				"received at %s): the disk holds %s", o.at(crash), c.Spec.ClientID, cur.connID, o.at(cur.promisedAt), what))
			return
		}
		for _, om := range c.outq {
			if om.m.QoS == 2 && !om.rec && (surv == nil || !ss.inbound[om.pid]) {
				om.m.rerouted = true
			}
		}
		if surv == nil {
			continue // gone: the next CONNECT starts a new session
		}
		if surv != cur || surv.inc != c.inc {
			// An older session, one the client discarded (its clean start
			// was cut short) or never learned of.
			o.resurrect(c, surv, crash)
		}
		if inc := surv.inc; inc != nil && !o.restoreSubs(c, inc, ss, crash, surv == cur && !inc.lenient) {
			return
		}
	}
}

// rearmWill arms a will the disk holds for instant at, and reports whether
// it is pending (a resume cancels it). A will already published before
// the crash (its removal from the record not yet on disk) is published
// again: it keeps its first instant and may arrive twice.
func (o *Oracle) rearmWill(w *Msg, at, crash time.Time) bool {
	if !at.After(o.now()) {
		o.recoveryWills++
	}
	if w.willState == willArmed && !w.FireAt.After(crash) {
		w.DupOK = true
		return false
	}
	if w.willState == willCancelled && !w.suspended {
		// Cancelled before the crash (DISCONNECT, a resume) by a record
		// change that was not yet durable: the old record comes back.
		w.DupOK = true
	}
	w.suspended = false
	o.armWill(w, at)
	return true
}

// resurrect makes the session on disk the client's again, although the
// client's state belongs to another one: a lenient incarnation.
func (o *Oracle) resurrect(c *Client, bs *bsess, crash time.Time) {
	o.w.debugf("crash brings back a session of %s the client does not hold (created on connection %d)", c.Spec.ClientID, bs.connID)
	o.bsCur[bs.key] = bs
	if c.inc != nil && c.inc != bs.inc {
		// Bytes the dead broker wrote on the client's connection may still
		// arrive (held by a partition): they belong to the old session.
		if cr := o.conns[c.connID]; cr != nil && cr.seen {
			c.deadConn, c.deadInc = c.connID, c.inc
		}
		o.endIncarnation(c.inc)
	}
	inc := bs.inc
	if inc == nil {
		inc = o.newIncarnation(c)
		inc.Start = crash
		bs.inc = inc
	}
	inc.Ended, inc.End = false, time.Time{}
	inc.lenient = true
	c.inc = inc
	o.Excused.Crash++
	for _, om := range c.outq {
		om.m.DupOK, om.m.lenient = true, true
	}
}

// restoreSubs checks the acknowledged subscription changes of inc against
// the disk (check) and adds the disk's state at the crash to each filter's
// history, one nanosecond after the crash (after every operation the
// crash cut short).
func (o *Oracle) restoreSubs(c *Client, inc *Incarnation, ss *shadowSess, crash time.Time, check bool) bool {
	at := crash.Add(time.Nanosecond)
	var extra []string
	for f := range ss.subs {
		if inc.byRaw[f] == nil {
			extra = append(extra, f)
		}
	}
	slices.Sort(extra)
	for _, f := range extra {
		inc.filter(f)
	}
	for _, fr := range inc.filters {
		opts, on := ss.subs[fr.raw]
		if check {
			o.Checked[InvDurable]++
			if want, qos, known := fr.settled(crash); known && (want != on || on && opts.QoS != qos) {
				got := "absent"
				if on {
					got = fmt.Sprintf("present with QoS %d", opts.QoS)
				}
				wantS := "absent (UNSUBACK received)"
				if want {
					wantS = fmt.Sprintf("present with QoS %d (SUBACK received)", qos)
				}
				o.fail(InvDurable, fmt.Sprintf("power loss at %s: subscription %q of %s (incarnation %d) should be %s, the disk has it %s",
					o.at(crash), fr.raw, c.Spec.ClientID, inc.ID, wantS, got))
				return false
			}
		}
		o.w.debugf("disk at the crash: %s (incarnation %d) %s subscribed=%v qos=%d", c.Spec.ClientID, inc.ID, fr.raw, on, opts.QoS)
		op := &SubOp{Inc: inc, Raw: fr.raw, Unsub: !on, QoS: opts.QoS, SendAt: at, AckAt: at, Acked: true, Granted: on, synthetic: true}
		fr.ops = append(fr.ops, op)
	}
	inc.maskN = -1 // filters may have been added
	return true
}

// settled returns the state the acknowledged operations of fr give at t,
// when every operation sent before t was acknowledged (known).
func (fr *filterRec) settled(t time.Time) (on bool, qos byte, known bool) {
	for _, op := range fr.ops {
		if op.SendAt.After(t) {
			break
		}
		if !op.Acked {
			return false, 0, false
		}
		if op.effective() {
			on, qos = !op.Unsub, op.QoS
		}
	}
	return on, qos, true
}

// brokerRecovered runs after Recover: the restarted broker must hold
// exactly what the disk holds.
func (o *Oracle) brokerRecovered() {
	if o.Failure != nil {
		return
	}
	b := o.w.Broker.B
	sh := o.w.Broker.shadow
	now := o.now()
	for _, c := range o.w.Clients {
		key := c.Spec.Tenant + "\x00" + c.Spec.ClientID
		ss := sh.sess[key]
		want := ss != nil && ss.rec != nil
		if want {
			since := recoveredSince(ss.rec, now)
			if e := secs(ss.rec.Expiry); e != never && !since.Add(e).After(now) {
				want = false // expired while the broker was down: Recover ended it
			}
		}
		info, err := b.Session(c.Spec.Tenant, c.Spec.ClientID)
		o.Checked[InvDurable]++
		switch {
		case err != nil && !errors.Is(err, broker.ErrNoSession):
			o.fail(InvDurable, fmt.Sprintf("after the restart, the session of %s cannot be read: %v", c.Spec.ClientID, err))
			return
		case want != (err == nil):
			o.fail(InvDurable, fmt.Sprintf("after the restart, %s has a session: %v; the disk says %v", c.Spec.ClientID, err == nil, want))
			return
		case !want:
			continue
		}
		var got, exp []string
		for _, s := range info.Subscriptions {
			got = append(got, fmt.Sprintf("%s@%d", s.Filter, s.QoS))
		}
		for f, opt := range ss.subs {
			exp = append(exp, fmt.Sprintf("%s@%d", f, opt.QoS))
		}
		slices.Sort(got)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			o.fail(InvDurable, fmt.Sprintf("after the restart, %s has subscriptions %v; the disk holds %v", c.Spec.ClientID, got, exp))
			return
		}
		n := restoredDeliveries(ss)
		held := info.Queued + info.Inflight
		if held < n || held > n+o.recoveryWills {
			o.fail(InvDurable, fmt.Sprintf("after the restart, %s holds %d messages (%d queued, %d in flight); the disk holds %d",
				c.Spec.ClientID, held, info.Queued, info.Inflight, n))
			return
		}
		o.sampleQueue(c, info, "after the restart")
	}
	for _, t := range o.w.tenants {
		for _, tp := range o.retTopic[t] {
			want := sh.retained[t+"\x00"+tp]
			var got uint64
			if ri := b.Retained(t, tp, 1, true); len(ri) > 0 {
				got, _ = payloadID(ri[0].Payload)
			}
			o.Checked[InvDurable]++
			if got != want {
				o.fail(InvDurable, fmt.Sprintf("after the restart, the retained message of %s/%s is %d; the disk holds %d", t, tp, got, want))
				return
			}
		}
	}
}

// describeDeliveries lists a session's queue on disk (debugging).
func describeDeliveries(ss *shadowSess) string {
	seqs := make([]uint64, 0, len(ss.deliv))
	for s := range ss.deliv {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	var b []byte
	for _, s := range seqs {
		d := ss.deliv[s]
		id := uint64(0)
		if d.Msg != nil {
			id, _ = payloadID(d.Msg.Payload)
		}
		b = fmt.Appendf(b, " %d:msg=%d/pid=%d/q%d/st%d", s, id, d.PID, d.QoS, d.State)
	}
	return string(b)
}

// restoredDeliveries counts the deliveries Recover restores from ss: in
// sequence order, the first entry of each non-zero packet id.
func restoredDeliveries(ss *shadowSess) int {
	seqs := make([]uint64, 0, len(ss.deliv))
	for s := range ss.deliv {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	seen := map[uint16]bool{}
	n := 0
	for _, s := range seqs {
		d := ss.deliv[s]
		if d.PID == 0 || seen[d.PID] {
			continue
		}
		seen[d.PID] = true
		n++
	}
	return n
}

// --- Queue-full drops, from the broker's own counters. ---
//
// A QoS 1/2 delivery the broker drops for a full queue is counted in the
// session's SessionInfo.Dropped.QueueFull. The runtime reads the broker's
// total before and after each PUBLISH it hands over:
//
//   - a session whose counter moved while the broker routed a PUBLISH
//     dropped that message, which is excused for it, and only it;
//   - a session whose counter moved by k elsewhere (a timer: deliveries
//     parked on a slow subscriber dropped when their wait ends; a will)
//     dropped its k most recent deliveries: parked deliveries form a FIFO
//     that later deliveries never overtake, and a timeout drops all of
//     them. The k most recent messages routed towards it, neither received
//     nor already excused, are excused; only messages that surely matched
//     its subscriptions count towards k (others on the way are excused
//     too, never counted).
//
// The counters are read before every packet the runtime hands over (a
// CONNECT may replace the session, and with it the counter), before a
// crash and before the final checks.
// The retained messages a SUBSCRIBE brings may be dropped too (counted per
// session, not in the total): its baseline is read again after each one.

// dropKey names a message dropped for a client's session.
type dropKey struct {
	client int
	msg    uint64
}

// routed is a PUBLISH the broker has routed, in routing order, and the
// clients for whose sessions it dropped it then.
type routed struct {
	m       *Msg
	at      time.Time
	dropped []int
}

// refreshDropBaseline reads one session's counter (its entry may be new).
func (o *Oracle) refreshDropBaseline(key string) {
	b := o.w.Broker.B
	c := o.clientByKey[key]
	if b == nil || c == nil {
		return
	}
	if info, err := b.Session(c.Spec.Tenant, c.Spec.ClientID); err == nil {
		o.qfBase[key] = info.Dropped.QueueFull
		o.sampleQueue(c, info, "at its CONNECT")
	} else {
		delete(o.qfBase, key) // a later session starts at 0
	}
}

// beforeRoute attributes drops that happened outside a PUBLISH.
func (o *Oracle) beforeRoute() {
	p := o.w.Broker
	if p.B == nil {
		return
	}
	st := p.B.Stats()
	if g := st.DroppedBy[broker.DropQueueFull].Load(); g != p.droppedQF {
		for _, t := range o.w.tenants {
			o.scanDrops(t, 0)
		}
		p.droppedQF = g
	}
	p.messagesIn = st.MessagesIn.Load()
}

// afterRoute records a routed PUBLISH and attributes its drops.
func (o *Oracle) afterRoute(tenant string, h packet.FixedHeader, body []byte, v packet.Version) {
	p := o.w.Broker
	if p.B == nil {
		return
	}
	st := p.B.Stats()
	if st.MessagesIn.Load() == p.messagesIn {
		return // not routed: a QoS 2 retransmission the broker recognised
	}
	id := publishedID(h, body, v)
	if m := o.msg(id); m != nil && m.refuse == "" { // a refused one is counted in, not routed
		o.routed = append(o.routed, routed{m: m, at: o.now()})
	}
	if g := st.DroppedBy[broker.DropQueueFull].Load(); g != p.droppedQF {
		p.droppedQF = g
		o.scanDrops(tenant, id)
	}
}

// publishedID returns the message id in a PUBLISH's payload (0: none).
func publishedID(h packet.FixedHeader, body []byte, v packet.Version) uint64 {
	var pub packet.Publish
	if pub.Decode(h, body, v) != nil {
		return 0
	}
	id, _ := payloadID(pub.Payload)
	return id
}

// scanDrops compares a tenant's session counters with their baselines; a
// counter that moved dropped msg, or (msg 0) its most recent deliveries.
func (o *Oracle) scanDrops(tenant string, msg uint64) {
	infos, _ := o.w.Broker.B.Sessions(tenant, 0, 0)
	for i := range infos {
		info := &infos[i]
		key := tenant + "\x00" + info.ClientID
		c := o.clientByKey[key]
		if c == nil {
			continue
		}
		// Every session of a broker process starts at 0; a baseline is
		// read again whenever a CONNECT may have made a new one.
		if base := o.qfBase[key]; info.Dropped.QueueFull != base {
			switch {
			case info.Dropped.QueueFull < base:
			case msg != 0:
				o.qfDropped[dropKey{c.Index, msg}] = true
				if n := len(o.routed); n > 0 && o.routed[n-1].m.ID == msg {
					o.routed[n-1].dropped = append(o.routed[n-1].dropped, c.Index)
				}
				o.w.debugf("broker dropped msg=%d for %s: queue full (%d queued, %d in flight)", msg, c.Spec.ClientID, info.Queued, info.Inflight)
			default:
				o.excuseLatest(c, int(info.Dropped.QueueFull-base))
			}
			o.qfBase[key] = info.Dropped.QueueFull
		}
		o.sampleQueue(c, *info, "at a drop")
	}
}

// excuseLatest records that the broker dropped the k most recent
// messages routed towards c's session (see above); resolveExcuses names
// them at the end of the run.
func (o *Oracle) excuseLatest(c *Client, k int) {
	inc := c.inc
	if bs := o.bsCur[c.Spec.Tenant+"\x00"+c.Spec.ClientID]; bs != nil && bs.inc != nil {
		inc = bs.inc
	}
	o.w.debugf("broker dropped %d messages for %s outside a PUBLISH", k, c.Spec.ClientID)
	if inc != nil {
		o.lateDrops = append(o.lateDrops, lateDrop{c: c, inc: inc, k: k, routed: len(o.routed)})
	}
}

// lateDrop is a drop of the k most recent deliveries of a session, counted
// outside a PUBLISH, when routed held routed entries.
type lateDrop struct {
	c      *Client
	inc    *Incarnation
	k      int
	routed int
}

// resolveExcuses excuses, for each drop counted outside a PUBLISH, the k
// most recent messages routed towards the session before it that the
// client has not received by the end of the run. Resolved at the end, not
// at the drop: a message routed before the dropped ones may still have
// been on its way to a slow reader then, and taking it for one of them
// left a dropped message unexcused.
func (o *Oracle) resolveExcuses() {
	for _, d := range o.lateDrops {
		c, inc, k := d.c, d.inc, d.k
		for i := d.routed - 1; i >= 0 && k > 0; i-- {
			r := &o.routed[i]
			m := r.m
			key := dropKey{c.Index, m.ID}
			if g := inc.got[m.ID]; m.Tenant != c.Spec.Tenant || m.QoS == 0 || g != nil && g.Live || slices.Contains(r.dropped, c.Index) ||
				o.qfDropped[key] || !inc.possiblyMatched(m.Topic, m.SendAt, r.at) {
				continue // not for it, received (a retained copy does not count), or dropped already
			}
			o.qfDropped[key] = true
			o.w.debugf("  msg=%d excused for %s (a drop of %d)", m.ID, c.Spec.ClientID, d.k)
			if inc.surelyMatched(m.Topic, m.SendAt, r.at) {
				k--
			}
		}
	}
	o.lateDrops = nil
}

// surelyMatched reports whether a non-shared filter of inc matching topic
// was surely subscribed with QoS 1 or 2 during the whole of [a, b].
func (inc *Incarnation) surelyMatched(topic string, a, b time.Time) bool {
	mask := inc.mask(topic)
	for i, fr := range inc.filters {
		if fr.shared || i >= 64 || mask&(1<<i) == 0 {
			continue
		}
		if _, def, q := fr.activity(a, b); def && q >= 1 {
			return true
		}
	}
	return false
}

// stillHeld reports whether, at the end of the run, the durable broker
// still holds m for c's session: its queue entry is on disk, not yet
// completed by the client (a slow reader still draining its queue).
func (o *Oracle) stillHeld(c *Client, m *Msg) bool {
	p := o.w.Broker
	if p.shadow == nil || !p.Up() {
		return false
	}
	if o.held == nil {
		o.held = map[dropKey]bool{}
		for key, ss := range p.shadow.sess {
			hc := o.clientByKey[key]
			if hc == nil || ss.rec == nil {
				continue
			}
			for _, d := range ss.deliv {
				if d.Msg != nil {
					if id, ok := payloadID(d.Msg.Payload); ok {
						o.held[dropKey{hc.Index, id}] = true
					}
				}
			}
		}
	}
	return o.held[dropKey{c.Index, m.ID}]
}

// droppedFor reports whether the broker counted m as dropped for c's
// session because its queue was full.
func (o *Oracle) droppedFor(c *Client, m *Msg) bool { return o.qfDropped[dropKey{c.Index, m.ID}] }

// sampleQueue checks a session's holdings against the bounds: at most
// MaxQueued waiting, MaxInflight in flight; a restart queues again what was
// in flight, so together at most MaxQueued + MaxInflight.
func (o *Oracle) sampleQueue(c *Client, info broker.SessionInfo, when string) {
	cfg := &o.w.Broker.Spec.Config.Session
	maxQueued := o.w.limits(c.Spec.Tenant).maxQueued
	o.Checked[InvQueueBound]++
	if info.Inflight > int(cfg.MaxInflight) || info.Queued+info.Inflight > maxQueued+int(cfg.MaxInflight) {
		o.fail(InvQueueBound, fmt.Sprintf("%s's session holds %d queued and %d in flight %s (MaxQueued %d, MaxInflight %d)",
			c.Spec.ClientID, info.Queued, info.Inflight, when, maxQueued, cfg.MaxInflight))
	}
}
