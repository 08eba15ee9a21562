package kvsim

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checks of a run's history. Times are virtual; an operation without
// an answer returns at +infinity, so it may take effect at any time after
// its call or never (placed last, nobody sees it). Porcupine runs
// goroutines inside and joins them; its verdict depends only on the
// history. A check that reaches the timeout is counted as inconclusive,
// never as a pass or a failure.

const linzTimeout = 20 * time.Second

// registerModel: every key but the scanned region is one register ("" is
// absent: values are never empty).
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(kvIn).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		return stepRegister(state.(string), input.(kvIn), output.(kvOut))
	},
	DescribeOperation: describeOp,
}

func stepRegister(cur string, in kvIn, out kvOut) (bool, any) {
	switch in.kind {
	case opGet:
		return out.found == (cur != "") && out.val == cur, cur
	case opPut:
		return true, in.val
	case opDel:
		return true, ""
	case opCAS:
		holds := in.expectAbsent && cur == "" || !in.expectAbsent && cur != "" && cur == in.expect
		if out.unknown {
			if holds {
				return true, in.val
			}
			return true, cur
		}
		if out.ok {
			return holds, in.val
		}
		return !holds && out.found == (cur != "") && out.val == cur, cur
	}
	return false, cur
}

// regionModel: the scanned region as one map, so that a scan must see one
// instant of it (its keys as of one point between its call and return).
// The state is the sorted "key=value\n" lines.
var regionModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(kvIn), output.(kvOut)
		m := decodeRegion(state.(string))
		if in.kind == opScan {
			end := in.end
			if out.resume != "" {
				end = out.resume
			}
			var want []string
			for _, k := range sortedKeys(m) {
				if k >= in.start && k < end {
					want = append(want, k+"="+m[k])
				}
			}
			var got []string
			for _, kv := range out.kvs {
				got = append(got, string(kv.Key)+"="+string(kv.Value))
			}
			return slices.Equal(want, got), state
		}
		ok, next := stepRegister(m[in.key], in, out)
		if v := next.(string); v == "" {
			delete(m, in.key)
		} else {
			m[in.key] = v
		}
		return ok, encodeRegion(m)
	},
	DescribeOperation: describeOp,
}

func decodeRegion(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func encodeRegion(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		b.WriteString(k + "=" + m[k] + "\n")
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describeOp(input, output any) string {
	in, out := input.(kvIn), output.(kvOut)
	var s string
	switch in.kind {
	case opGet:
		s = fmt.Sprintf("get %s -> %q found=%v", in.key, out.val, out.found)
	case opPut:
		s = fmt.Sprintf("put %s = %q", in.key, in.val)
	case opDel:
		s = fmt.Sprintf("del %s", in.key)
	case opCAS:
		exp := fmt.Sprintf("%q", in.expect)
		if in.expectAbsent {
			exp = "absent"
		}
		s = fmt.Sprintf("cas %s %s -> %q: ok=%v cur=%q", in.key, exp, in.val, out.ok, out.val)
	case opScan:
		s = fmt.Sprintf("scan [%s,%s) resume=%q -> %d pairs", in.start, in.end, out.resume, len(out.kvs))
	}
	if out.unknown {
		s += " (outcome unknown)"
	}
	return s
}

// check runs every check of the run's history.
func (w *world) check() {
	var regs, region []porcupine.Operation
	for _, op := range w.history {
		in := op.Input.(kvIn)
		if in.kind == opScan || strings.HasPrefix(in.key, "s") {
			region = append(region, op)
		} else {
			regs = append(regs, op)
		}
	}
	w.linearizable("linearizable-registers", registerModel, regs)
	w.linearizable("linearizable-scans", regionModel, region)
	// A stale read may be behind, but only ever returns a value some write
	// wrote (or nothing).
	for _, op := range w.stale {
		in, out := op.Input.(kvIn), op.Output.(kvOut)
		if out.found && !slices.Contains(w.written[in.key], out.val) {
			w.fail("stale-read", fmt.Sprintf("stale get %s returned %q, never written", in.key, out.val))
		}
	}
}

func (w *world) linearizable(name string, m porcupine.Model, h []porcupine.Operation) {
	if len(h) == 0 {
		return
	}
	res, info := porcupine.CheckOperationsVerbose(m, h, linzTimeout)
	switch res {
	case porcupine.Ok:
		w.stats.Linearized++
	case porcupine.Unknown:
		w.stats.Inconclusive++
	default:
		w.fail(name, "history is not linearizable"+w.explain(m, h, info))
	}
}

// explain shows where the failing partition stops being linearizable:
// the end of its longest linearizable prefix and the operations after it.
func (w *world) explain(m porcupine.Model, h []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := [][]porcupine.Operation{h}
	if m.Partition != nil {
		parts = m.Partition(h)
	}
	lin := info.PartialLinearizationsOperations()
	var b strings.Builder
	for i, part := range parts {
		if i >= len(lin) {
			break
		}
		var longest []porcupine.Operation
		for _, p := range lin[i] {
			if len(p) > len(longest) {
				longest = p
			}
		}
		if len(longest) == len(part) {
			continue
		}
		fmt.Fprintf(&b, "\n  a partition of %d operations; its longest linearizable prefix (%d) ends:", len(part), len(longest))
		for _, op := range longest[max(0, len(longest)-10):] {
			b.WriteString("\n    " + fmtOp(m, op))
		}
		in := map[int64]bool{}
		for _, op := range longest {
			in[op.Call] = true
		}
		rest := slices.Clone(part)
		slices.SortFunc(rest, func(a, b porcupine.Operation) int { return int(min(max(a.Call-b.Call, -1), 1)) })
		b.WriteString("\n  and the operations not linearized, by call time:")
		k := 0
		for _, op := range rest {
			if !in[op.Call] && k < 12 {
				b.WriteString("\n    " + fmtOp(m, op))
				k++
			}
		}
		break
	}
	return b.String()
}

func fmtOp(m porcupine.Model, op porcupine.Operation) string {
	ret := "∞"
	if op.Return != math.MaxInt64 {
		ret = time.Duration(op.Return).String()
	}
	return fmt.Sprintf("[%s, %s] c%d %s", time.Duration(op.Call), ret, op.ClientId, m.DescribeOperation(op.Input, op.Output))
}
