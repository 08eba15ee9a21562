package sim

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// Histories checked with Porcupine. Times are virtual nanoseconds since
// Epoch; an operation whose end was never observed returns at +infinity
// (it may take effect at any point after its call, or never be seen).
//
// Porcupine's checker runs goroutines internally and joins them before it
// returns; its verdict (linearizable or not) is a function of the history,
// so the run stays deterministic. A timeout bounds pathological histories;
// a check that times out counts as inconclusive (Oracle.Inconclusive), never
// as a failure, so the verdict of a run does not depend on the machine's
// speed except in that count, which is not part of the trace.

// describe lists a small history, for the failure report.
func describe(m porcupine.Model, h []porcupine.Operation) string {
	if len(h) > 100 {
		return ""
	}
	var b bytes.Buffer
	for _, op := range h {
		ret := "∞"
		if op.Return != math.MaxInt64 {
			ret = fmtDur(time.Duration(op.Return))
		}
		fmt.Fprintf(&b, "\n  [%s, %s] client %d: %s", fmtDur(time.Duration(op.Call)), ret, op.ClientId, m.DescribeOperation(op.Input, op.Output))
	}
	return b.String()
}

func vt(t time.Time) int64 {
	if t.IsZero() || !t.Before(farFuture) {
		return math.MaxInt64
	}
	return int64(t.Sub(Epoch))
}

// --- Retained store: one register per (tenant, topic). ---
//
// The state is the value a reader sees and, for a durable broker, the
// values the disk may hold: the broker commits retained changes in the
// order it applies them, so the disk holds the value after some prefix of
// the sets, at least up to the last acknowledged one (a PUBACK or PUBREC
// waits for the commit). A crash of an in-memory broker empties the store;
// a crash of a durable one leaves the value on disk (the operation's
// output), which must be one of those.

// linzTimeout bounds one Porcupine check.
const linzTimeout = 10 * time.Second

type regKind uint8

const (
	regSet regKind = iota
	regGet
	regReset // a crash of an in-memory broker: the store is empty again
	regCrash // a power loss of a durable broker: the output is the value on disk
)

type regIn struct {
	kind  regKind
	val   uint64 // Set: message id (0: delete)
	acked bool   // Set: acknowledged, so durable (QoS 1/2 PUBACK or PUBREC)
	maybe bool   // Set: may not have been applied at all
}

// regState is the register: cur, the value read; may, the values the disk
// may hold (big-endian ids, sorted, no duplicates, so that == compares).
type regState struct {
	cur uint64
	may string
}

func regOne(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return string(b[:])
}

func regHas(may string, v uint64) bool {
	for i := 0; i+8 <= len(may); i += 8 {
		if binary.BigEndian.Uint64([]byte(may[i:i+8])) == v {
			return true
		}
	}
	return false
}

func regAdd(may string, v uint64) string {
	if regHas(may, v) {
		return may
	}
	vals := []uint64{v}
	for i := 0; i+8 <= len(may); i += 8 {
		vals = append(vals, binary.BigEndian.Uint64([]byte(may[i:i+8])))
	}
	slices.Sort(vals)
	b := make([]byte, 0, 8*len(vals))
	for _, x := range vals {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return string(b)
}

// retainedNM is the register with sets that may not have happened (a
// transmission the broker may never have read): from each state, such a
// set leads to the state with and the state without it.
var retainedNM = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{regState{may: regOne(0)}} },
	Step: func(state, input, output interface{}) []interface{} {
		in, st := input.(regIn), state.(regState)
		switch in.kind {
		case regSet:
			next := regState{cur: in.val, may: regAdd(st.may, in.val)}
			if in.acked {
				next.may = regOne(in.val)
			}
			if in.maybe {
				return []interface{}{st, next}
			}
			return []interface{}{next}
		case regReset:
			return []interface{}{regState{may: regOne(0)}}
		case regCrash:
			if v := output.(uint64); regHas(st.may, v) {
				return []interface{}{regState{cur: v, may: regOne(v)}}
			}
			return nil
		}
		if output.(uint64) == st.cur {
			return []interface{}{st}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		in, ok := input.(regIn)
		if !ok {
			return ""
		}
		switch in.kind {
		case regSet:
			what := fmt.Sprintf("set(%d)", in.val)
			if in.val == 0 {
				what = "delete"
			}
			if in.maybe {
				what += ", maybe"
			}
			if in.acked {
				what += ", acknowledged"
			}
			return what
		case regReset:
			return "crash"
		case regCrash:
			v, _ := output.(uint64)
			return fmt.Sprintf("power loss → %d on disk", v)
		}
		v, _ := output.(uint64)
		return fmt.Sprintf("get() → %d", v)
	},
	DescribeState: func(state interface{}) string {
		st, _ := state.(regState)
		var may []uint64
		for i := 0; i+8 <= len(st.may); i += 8 {
			may = append(may, binary.BigEndian.Uint64([]byte(st.may[i:i+8])))
		}
		return fmt.Sprintf("%d (disk: one of %v)", st.cur, may)
	},
}

var retainedModel = retainedNM.ToModel()

// retainedOps returns the operations of a retained publish: one per
// transmission that may have been applied. A transmission is certainly
// applied when a response proved the broker processed it (its PUBACK or
// PUBREC, a later PINGRESP), and may have been applied, or not, when it was
// in flight when its connection ended. QoS 2 is applied once per broker
// session (a retransmission is recognised by its packet id) between its
// first transmission and the proof, unless it may have been resent into a
// new session (DupOK), where each retransmission may apply it again.
func (o *Oracle) retainedOps(m *Msg) []porcupine.Operation {
	v := m.ID
	if m.Empty {
		v = 0
	}
	acked := m.Acked && !m.Refused && m.QoS > 0
	var ops []porcupine.Operation
	add := func(from, to time.Time, maybe, ack bool) {
		if to.Before(from) {
			return // sent on a connection the broker had already closed
		}
		ops = append(ops, porcupine.Operation{ClientId: m.Pub.Index, Input: regIn{kind: regSet, val: v, acked: ack, maybe: maybe},
			Call: vt(from), Return: vt(to), Output: uint64(0)})
	}
	at := m.attempts
	if len(at) == 0 {
		return nil
	}
	if m.QoS < 2 {
		for _, a := range at {
			if !a.proc.IsZero() {
				add(a.at, a.proc, false, acked)
			} else {
				add(a.at, o.closeOf(a.conn), true, false)
			}
		}
		return ops
	}
	end, proven := o.closeOf(at[len(at)-1].conn), false
	for _, a := range at {
		if !a.proc.IsZero() {
			end, proven = a.proc, true
			break
		}
	}
	add(at[0].at, end, !proven, proven && acked)
	if m.DupOK {
		for _, a := range at[1:] {
			if a.proc.IsZero() {
				add(a.at, o.closeOf(a.conn), true, false)
			} else {
				add(a.at, a.proc, true, false)
			}
		}
	}
	return ops
}

func (o *Oracle) checkRetainedLinearizable() {
	for _, tenant := range o.w.tenants {
		for _, topic := range o.retTopic[tenant] {
			var h []porcupine.Operation
			for _, m := range o.msgs {
				if !m.Retain || m.Will || m.Tenant != tenant || m.Topic != topic || m.Refused {
					continue
				}
				h = append(h, o.retainedOps(m)...)
			}
			for _, pr := range o.probes {
				if pr.c.Spec.Tenant != tenant || !topicMatch(probeFilter, topic) {
					continue
				}
				h = append(h, porcupine.Operation{ClientId: pr.c.Index, Input: regIn{kind: regGet},
					Call: vt(pr.start), Return: vt(pr.end), Output: pr.got[topic]})
			}
			// A crash comes after every operation it cut short (those end at
			// the crash instant).
			for i, t := range o.crashes {
				in, out := regIn{kind: regReset}, uint64(0)
				if i < len(o.crashRet) {
					in, out = regIn{kind: regCrash}, o.crashRet[i][tenant+"\x00"+topic]
				}
				at := vt(t.Add(time.Nanosecond))
				h = append(h, porcupine.Operation{ClientId: len(o.w.Clients), Input: in, Call: at, Return: at, Output: out})
			}
			o.Checked[InvRetained]++
			res, info := porcupine.CheckOperationsVerbose(retainedModel, h, linzTimeout)
			if res == porcupine.Unknown {
				o.Inconclusive++
			}
			if res == porcupine.Illegal {
				var buf bytes.Buffer
				_ = porcupine.Visualize(retainedModel, info, &buf)
				o.fail(InvRetained, fmt.Sprintf("retained history of %s/%s (%d operations) is not linearizable%s", tenant, topic, len(h), describe(retainedModel, h)))
				o.Failure.HTML = buf.Bytes()
				return
			}
		}
	}
}

// --- Subscription table: one set of filters per session incarnation. ---

type subKind uint8

const (
	subAdd subKind = iota
	subRemove
	subObserve
)

type subIn struct {
	kind  subKind
	bit   uint64 // the filter (Add, Remove)
	qos1  bool   // Add: granted QoS 1 or 2
	maybe bool   // Add, Remove: never acknowledged, may not have been applied
	match uint64 // Observe: the filters the topic matches
}

type subState struct{ subs, q1 uint64 }

// subscriptionsNM is the subscription table of one incarnation. A
// SUBSCRIBE or UNSUBSCRIBE never acknowledged (its connection ended, or
// the run did) may have been applied or not: from each state it leads to
// both.
var subscriptionsNM = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{subState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in := state.(subState), input.(subIn)
		next := s
		switch in.kind {
		case subAdd:
			next.subs |= in.bit
			if in.qos1 {
				next.q1 |= in.bit
			} else {
				next.q1 &^= in.bit
			}
		case subRemove:
			next.subs &^= in.bit
			next.q1 &^= in.bit
		default:
			if output.(bool) {
				if s.subs&in.match != 0 { // delivered: some matching filter was subscribed
					return []interface{}{s}
				}
				return nil
			}
			if s.q1&in.match == 0 { // surely not delivered: no matching QoS 1/2 filter was subscribed
				return []interface{}{s}
			}
			return nil
		}
		if in.maybe {
			return []interface{}{s, next}
		}
		return []interface{}{next}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, ok := input.(subIn)
		if !ok {
			return ""
		}
		maybe := ""
		if in.maybe {
			maybe = ", maybe"
		}
		switch in.kind {
		case subAdd:
			return fmt.Sprintf("subscribe(%b qos1=%v%s)", in.bit, in.qos1, maybe)
		case subRemove:
			return fmt.Sprintf("unsubscribe(%b%s)", in.bit, maybe)
		}
		d, _ := output.(bool)
		return fmt.Sprintf("publish(matches %b) → delivered=%v", in.match, d)
	},
	DescribeState: func(state interface{}) string {
		s, _ := state.(subState)
		return fmt.Sprintf("subs=%b qos1=%b", s.subs, s.q1)
	},
}

var subscriptionsModel = subscriptionsNM.ToModel()

// maxObservations bounds the observations of one history: Porcupine does
// not know that observations commute, and many concurrent ones make its
// search exponential.
const maxObservations = 24

// trimObservations drops observations implied by others (same outcome,
// same filters, an interval that contains the other's: whatever point
// satisfies the narrower one satisfies it) and keeps the narrowest
// maxObservations, in a deterministic order.
func trimObservations(obs []porcupine.Operation) []porcupine.Operation {
	slices.SortStableFunc(obs, func(a, b porcupine.Operation) int {
		return cmp.Compare(a.Return-a.Call, b.Return-b.Call)
	})
	var keep []porcupine.Operation
	for _, x := range obs {
		implied := false
		for _, k := range keep {
			if k.Input == x.Input && k.Output == x.Output && x.Call <= k.Call && k.Return <= x.Return {
				implied = true
				break
			}
		}
		if !implied {
			keep = append(keep, x)
		}
		if len(keep) == maxObservations {
			break
		}
	}
	return keep
}

// checkSubscriptionsLinearizable checks, per incarnation, that
// acknowledged subscribes and unsubscribes and the QoS 1/2 publishes it
// received (or surely did not) fit one order of the subscription table.
func (o *Oracle) checkSubscriptionsLinearizable() {
	for _, inc := range o.incs {
		if len(inc.filters) == 0 || len(inc.filters) > 64 {
			continue
		}
		alive := !inc.Ended && inc.C.inc == inc && o.attached(inc.C)
		var h []porcupine.Operation
		id := inc.C.Index
		// windows[i]: the intervals in which filter i's state may change.
		windows := make([][][2]int64, len(inc.filters))
		for _, fr := range inc.filters {
			if fr.shared {
				continue
			}
			bit := uint64(1) << fr.idx
			for _, op := range fr.ops {
				if op.Acked && !op.effective() {
					continue
				}
				in := subIn{kind: subAdd, bit: bit, qos1: op.QoS >= 1, maybe: !op.Acked}
				if op.Unsub {
					in = subIn{kind: subRemove, bit: bit, maybe: !op.Acked}
				}
				ret := op.ackOrClose(o)
				if ret.Before(op.SendAt) {
					continue // sent on a connection the broker had already closed
				}
				windows[fr.idx] = append(windows[fr.idx], [2]int64{vt(op.SendAt), vt(ret)})
				h = append(h, porcupine.Operation{ClientId: id, Input: in, Call: vt(op.SendAt), Return: vt(ret), Output: false})
			}
		}
		if len(h) == 0 {
			continue
		}
		var obs []porcupine.Operation
		end := farFuture
		if inc.Ended {
			end = inc.End
		}
		for _, m := range o.pubsDuring(inc.C.Spec.Tenant, inc.Start, end) {
			if m.Tenant != inc.C.Spec.Tenant || m.QoS == 0 || m.Empty || m.Will || m.Refused || m.refuse != "" || isSharedTopic(m.Topic) {
				continue
			}
			var match uint64
			for i, fr := range inc.filters {
				if !fr.shared && inc.mask(m.Topic)&(1<<i) != 0 {
					match |= 1 << fr.idx
				}
			}
			// An observation outside every window in which a matching
			// filter's state may change sees a settled state: the direct
			// checks (delivery-subscribed, at-least-once) cover it, and
			// leaving it out keeps the history small.
			overlaps := false
			if match == 0 || m.SendAt.Before(inc.Start) {
				continue
			}
			g := inc.got[m.ID]
			delivered := g != nil && g.Live
			ret := m.procOrInf()
			if delivered {
				if g.At.Before(ret) {
					ret = g.At
				}
			}
			call, end := vt(m.SendAt), vt(ret)
			for _, fr := range inc.filters {
				if match&(1<<fr.idx) == 0 {
					continue
				}
				for _, w := range windows[fr.idx] {
					if w[0] <= end && call <= w[1] {
						overlaps = true
					}
				}
			}
			if !overlaps {
				continue
			}
			if !delivered && (!alive || !m.Acked || inc.lenient || o.droppedFor(inc.C, m) || o.stillHeld(inc.C, m) ||
				o.staleDropped[dropKey{inc.C.Index, m.ID}]) {
				continue // not receiving it proves nothing
			}
			obs = append(obs, porcupine.Operation{ClientId: len(o.w.Clients) + 1, Input: subIn{kind: subObserve, match: match},
				Call: vt(m.SendAt), Return: vt(ret), Output: delivered})
		}
		h = append(h, trimObservations(obs)...)
		o.Checked[InvSubscriptions]++
		if o.w.Scenario.Debug != nil {
			inf, obs := 0, 0
			for _, op := range h {
				if op.Return == math.MaxInt64 {
					inf++
				}
				if op.Input.(subIn).kind == subObserve {
					obs++
				}
			}
			o.w.debugf("subscriptions of %s inc %d: %d operations, %d observations, %d unbounded", inc.C.Spec.ClientID, inc.ID, len(h), obs, inf)
		}
		res, info := porcupine.CheckOperationsVerbose(subscriptionsModel, h, linzTimeout)
		if res == porcupine.Unknown {
			o.Inconclusive++
		}
		if res == porcupine.Illegal {
			var buf bytes.Buffer
			_ = porcupine.Visualize(subscriptionsModel, info, &buf)
			names := ""
			for _, fr := range inc.filters {
				names += fmt.Sprintf(" %b=%s", uint64(1)<<fr.idx, fr.raw)
			}
			o.fail(InvSubscriptions, fmt.Sprintf("subscription history of %s (incarnation %d, %d operations) is not linearizable; filters:%s%s",
				inc.C.Spec.ClientID, inc.ID, len(h), names, describe(subscriptionsModel, h)))
			o.Failure.HTML = buf.Bytes()
			return
		}
	}
}
