package sim

import (
	"bytes"
	"cmp"
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

// linzTimeout bounds one Porcupine check.
const linzTimeout = 10 * time.Second

type regKind uint8

const (
	regSet regKind = iota
	regGet
	regReset // a broker crash: the in-memory store is empty again
)

type regIn struct {
	kind regKind
	val  uint64 // Set: message id (0: delete)
}

var retainedModel = porcupine.Model{
	Init: func() interface{} { return uint64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regIn)
		switch in.kind {
		case regSet:
			return true, in.val
		case regReset:
			return true, uint64(0)
		}
		return output.(uint64) == state.(uint64), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in, ok := input.(regIn)
		if !ok {
			return ""
		}
		switch in.kind {
		case regSet:
			if in.val == 0 {
				return "delete"
			}
			return fmt.Sprintf("set(%d)", in.val)
		case regReset:
			return "crash"
		}
		v, _ := output.(uint64)
		return fmt.Sprintf("get() → %d", v)
	},
	DescribeState: func(state interface{}) string { return fmt.Sprintf("%v", state) },
}

func (o *Oracle) checkRetainedLinearizable() {
	for _, tenant := range o.w.tenants {
		for _, topic := range o.retTopic[tenant] {
			var h []porcupine.Operation
			for _, m := range o.msgs {
				if !m.Retain || m.Will || m.Tenant != tenant || m.Topic != topic || m.Refused {
					continue
				}
				v := m.ID
				if m.Empty {
					v = 0
				}
				if m.procOrInf().Before(m.SendAt) {
					continue // sent on a connection the broker had already closed
				}
				h = append(h, porcupine.Operation{ClientId: m.Pub.Index, Input: regIn{kind: regSet, val: v},
					Call: vt(m.SendAt), Return: vt(m.procOrInf()), Output: uint64(0)})
			}
			for _, pr := range o.probes {
				if pr.c.Spec.Tenant != tenant {
					continue
				}
				h = append(h, porcupine.Operation{ClientId: pr.c.Index, Input: regIn{kind: regGet},
					Call: vt(pr.start), Return: vt(pr.end), Output: pr.got[topic]})
			}
			for _, t := range o.crashes {
				h = append(h, porcupine.Operation{ClientId: len(o.w.Clients), Input: regIn{kind: regReset},
					Call: vt(t), Return: vt(t), Output: uint64(0)})
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
	match uint64 // Observe: the filters the topic matches
}

type subState struct{ subs, q1 uint64 }

var subscriptionsModel = porcupine.Model{
	Init: func() interface{} { return subState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in := state.(subState), input.(subIn)
		switch in.kind {
		case subAdd:
			s.subs |= in.bit
			if in.qos1 {
				s.q1 |= in.bit
			} else {
				s.q1 &^= in.bit
			}
			return true, s
		case subRemove:
			s.subs &^= in.bit
			s.q1 &^= in.bit
			return true, s
		}
		if output.(bool) {
			return s.subs&in.match != 0, s // delivered: some matching filter was subscribed
		}
		return s.q1&in.match == 0, s // surely not delivered: no matching QoS 1/2 filter was subscribed
	},
	DescribeOperation: func(input, output interface{}) string {
		in, ok := input.(subIn)
		if !ok {
			return ""
		}
		switch in.kind {
		case subAdd:
			return fmt.Sprintf("subscribe(%b qos1=%v)", in.bit, in.qos1)
		case subRemove:
			return fmt.Sprintf("unsubscribe(%b)", in.bit)
		}
		d, _ := output.(bool)
		return fmt.Sprintf("publish(matches %b) → delivered=%v", in.match, d)
	},
	DescribeState: func(state interface{}) string {
		s, _ := state.(subState)
		return fmt.Sprintf("subs=%b qos1=%b", s.subs, s.q1)
	},
}

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
				in := subIn{kind: subAdd, bit: bit, qos1: op.QoS >= 1}
				if op.Unsub {
					in = subIn{kind: subRemove, bit: bit}
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
		for _, m := range o.pubsDuring(inc.Start, end) {
			if m.Tenant != inc.C.Spec.Tenant || m.QoS == 0 || m.Empty || m.Will || m.Refused || isSharedTopic(m.Topic) {
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
			if !delivered && (!alive || !m.Acked || o.queueExcuse(inc, m)) {
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
