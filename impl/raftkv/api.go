package raftkv

import (
	"bytes"
	"fmt"
)

// ReqKind says what a Request does.
type ReqKind uint8

// Request kinds. Get and Scan read; Write applies its Ops atomically.
const (
	ReqGet ReqKind = iota + 1
	ReqScan
	ReqWrite
	// Internal requests, between nodes only.
	reqFreeze     // freeze the range for a merge into its left neighbour
	reqMergeAbort // make sure a merge of a frozen range can never happen
	reqUnfreeze   // the merge was abandoned
	reqWatch      // register a watch part at a replica (watch.go)
)

// ReadMode says what a read promises.
type ReadMode uint8

// Read modes.
const (
	// Linearizable reads (the default) see every write acknowledged before
	// they started: the leader confirms its leadership with a quorum
	// (raft ReadIndex) and reads once it has applied up to that index.
	Linearizable ReadMode = iota
	// Stale reads are served by whichever replica the request reaches, from
	// what it has applied: a committed state, possibly behind the latest
	// one; one replica never goes back in time, two replicas may disagree.
	Stale
)

// OpKind says what an Op of a Write does.
type OpKind uint8

// Op kinds.
const (
	OpPut         OpKind = iota + 1 // Key = Value
	OpDelete                        // remove Key
	OpDeleteRange                   // remove every key in [Key, End)
	// OpCAS is compare-and-set: if Key holds Expect (absent when
	// ExpectAbsent), set it to Value (remove it when Delete); otherwise the
	// whole Write fails and changes nothing.
	OpCAS
	OpIncrement // Key (a big-endian int64, absent = 0) += Delta; the result is returned
	opPutDesc   // meta: record a range descriptor unless a later one covers it
)

// Op is one change in a Write.
type Op struct {
	Kind         OpKind
	Key, End     []byte
	Value        []byte
	Expect       []byte
	ExpectAbsent bool
	Delete       bool
	Delta        int64
}

// Request is what a client asks a node. Keys are the client's keys; a
// Write's ops, a Scan's [Key, End) and a Get's Key must fall in one range
// (a Scan that crosses a range boundary returns the first range's part and
// a Resume key).
type Request struct {
	Kind  ReqKind
	Key   []byte
	End   []byte // Scan: exclusive end, nil for no end
	Limit int    // Scan: at most this many pairs (0: no limit)
	Read  ReadMode
	Ops   []Op
	// Internal requests name their range and its generation.
	Range   RangeID
	Gen     uint64
	Into    RangeID
	IntoGen uint64
	// A watch registration: whose and which.
	WatchID uint64
	Origin  NodeID
	// A merge carries the right-hand range (local to the leader, never sent).
	desc *Descriptor
	data []KV
}

// KV is a key and its value.
type KV struct{ Key, Value []byte }

// Response answers a Request.
type Response struct {
	Err *Error
	// Get
	Value []byte
	Found bool
	// Scan: the pairs in key order and, when the scan stopped at a range
	// boundary or the limit, the key to continue from.
	KVs    []KV
	Resume []byte
	// Write: Succeeded is false when a CAS failed (FailedOp is its index,
	// Current/CurrentFound what the key held); nothing was changed then.
	Succeeded    bool
	FailedOp     int
	Current      []byte
	CurrentFound bool
	Int          int64 // the last OpIncrement's result
	// Internal answers.
	Desc *Descriptor
	Data []KV
	Node NodeID // the node that executed the request
}

// ErrCode classifies an Error.
type ErrCode uint8

// Error codes. Every code but BadRequest is worth a retry; only Timeout
// leaves a Write's outcome unknown (Ambiguous).
const (
	ErrNotLeader   ErrCode = iota + 1 // the replica asked is not the leader; Leader is a hint (0: unknown)
	ErrRangeMoved                     // no range here holds the key (split, merge, moved); Desc, when set, is newer
	ErrBusy                           // a bound was reached (proposals in flight, pending requests)
	ErrTimeout                        // no answer in time
	ErrDropped                        // the proposal was not committed (another entry took its index)
	ErrUnavailable                    // no route to the range right now (no leader known, meta not yet known)
	ErrBadRequest                     // malformed or not allowed
	ErrStopped                        // the node is shutting down
)

var errNames = [...]string{
	ErrNotLeader: "not leader", ErrRangeMoved: "range moved", ErrBusy: "busy", ErrTimeout: "timeout",
	ErrDropped: "proposal dropped", ErrUnavailable: "unavailable", ErrBadRequest: "bad request",
	ErrStopped: "stopped",
}

func (c ErrCode) String() string {
	if int(c) < len(errNames) && errNames[c] != "" {
		return errNames[c]
	}
	return fmt.Sprintf("error(%d)", c)
}

// Error is the typed error of every failed Request.
type Error struct {
	Code   ErrCode
	Leader NodeID      // NotLeader: the leader's node, when known
	Desc   *Descriptor // RangeMoved: the descriptor the replica holds, when newer
	// Ambiguous: the Write may have been applied (or may still be).
	Ambiguous bool
	Msg       string
}

func (e *Error) Error() string {
	s := "raftkv: " + e.Code.String()
	if e.Leader != 0 {
		s += fmt.Sprintf(" (leader n%d)", e.Leader)
	}
	if e.Ambiguous {
		s += " (outcome unknown)"
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Retryable reports whether asking again may succeed.
func (e *Error) Retryable() bool { return e.Code != ErrBadRequest }

func errf(code ErrCode, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// isWrite reports requests that change state (and so can be ambiguous).
func (r *Request) isWrite() bool {
	return r.Kind != ReqGet && r.Kind != ReqScan && r.Kind != reqWatch
}

// span returns the keys the request touches: [start, end) with end nil
// meaning "start only" for point requests.
func (r *Request) routingKey() []byte {
	if r.Kind == ReqWrite && len(r.Ops) > 0 {
		return r.Ops[0].Key
	}
	return r.Key
}

// userKey maps a client key into the logical key space.
func userKey(k []byte) []byte {
	out := make([]byte, 0, len(userStart)+len(k))
	return append(append(out, userStart...), k...)
}

// fromUserKey is the inverse of userKey.
func fromUserKey(k []byte) []byte { return bytes.Clone(k[len(userStart):]) }

// toLogical rewrites a client request into the logical key space,
// refusing what a client may not ask.
func toLogical(r *Request) (*Request, *Error) {
	switch r.Kind {
	case ReqGet:
		return &Request{Kind: ReqGet, Key: userKey(r.Key), Read: r.Read}, nil
	case ReqScan:
		out := &Request{Kind: ReqScan, Key: userKey(r.Key), Limit: r.Limit, Read: r.Read}
		if r.End != nil {
			if bytes.Compare(r.End, r.Key) <= 0 {
				return nil, errf(ErrBadRequest, "scan end %q not after start %q", r.End, r.Key)
			}
			out.End = userKey(r.End)
		}
		if r.Limit < 0 {
			return nil, errf(ErrBadRequest, "negative limit")
		}
		return out, nil
	case ReqWrite:
		if len(r.Ops) == 0 {
			return nil, errf(ErrBadRequest, "empty write")
		}
		out := &Request{Kind: ReqWrite, Ops: make([]Op, len(r.Ops))}
		for i, op := range r.Ops {
			switch op.Kind {
			case OpPut, OpDelete, OpCAS, OpIncrement:
			case OpDeleteRange:
				if op.End == nil || bytes.Compare(op.End, op.Key) <= 0 {
					return nil, errf(ErrBadRequest, "delete range end not after start")
				}
			default:
				return nil, errf(ErrBadRequest, "op %d: kind %d not allowed", i, op.Kind)
			}
			op.Key = userKey(op.Key)
			if op.End != nil {
				op.End = userKey(op.End)
			}
			out.Ops[i] = op
		}
		return out, nil
	}
	return nil, errf(ErrBadRequest, "request kind %d not allowed", r.Kind)
}

// fromLogical rewrites a response's keys back into the client's space.
func fromLogical(resp *Response) *Response {
	for i := range resp.KVs {
		resp.KVs[i].Key = fromUserKey(resp.KVs[i].Key)
	}
	if resp.Resume != nil {
		if bytes.HasPrefix(resp.Resume, userStart) {
			resp.Resume = fromUserKey(resp.Resume)
		} else {
			resp.Resume = nil
		}
	}
	resp.Desc, resp.Data = nil, nil
	if resp.Err != nil {
		e := *resp.Err
		e.Desc = nil
		resp.Err = &e
	}
	return resp
}

func (o *Op) encode(e *enc) {
	e.byte1(byte(o.Kind))
	e.optBytes(o.Key)
	e.optBytes(o.End)
	e.optBytes(o.Value)
	e.optBytes(o.Expect)
	e.bool(o.ExpectAbsent)
	e.bool(o.Delete)
	e.i64(o.Delta)
}

func decodeOp(d *dec) Op {
	return Op{Kind: OpKind(d.byte1()), Key: d.optBytes(), End: d.optBytes(), Value: d.optBytes(),
		Expect: d.optBytes(), ExpectAbsent: d.bool(), Delete: d.bool(), Delta: d.i64()}
}

func (r *Request) encode(e *enc) {
	e.byte1(byte(r.Kind))
	e.optBytes(r.Key)
	e.optBytes(r.End)
	e.u64(uint64(r.Limit))
	e.byte1(byte(r.Read))
	e.u64(uint64(len(r.Ops)))
	for i := range r.Ops {
		r.Ops[i].encode(e)
	}
	e.u64(uint64(r.Range))
	e.u64(r.Gen)
	e.u64(uint64(r.Into))
	e.u64(r.IntoGen)
	e.u64(r.WatchID)
	e.u64(uint64(r.Origin))
}

func decodeRequest(d *dec) *Request {
	r := &Request{Kind: ReqKind(d.byte1()), Key: d.optBytes(), End: d.optBytes(), Limit: int(d.u64()), Read: ReadMode(d.byte1())}
	n := d.count()
	if n > 0 {
		r.Ops = make([]Op, 0, n)
	}
	for range n {
		r.Ops = append(r.Ops, decodeOp(d))
	}
	r.Range = RangeID(d.u64())
	r.Gen = d.u64()
	r.Into = RangeID(d.u64())
	r.IntoGen = d.u64()
	r.WatchID = d.u64()
	r.Origin = NodeID(d.u64())
	return r
}

// EncodeRequest returns the binary form of r.
func EncodeRequest(r *Request) []byte {
	var e enc
	r.encode(&e)
	return e.b
}

// DecodeRequest parses EncodeRequest's output.
func DecodeRequest(b []byte) (*Request, error) {
	d := dec{b: b}
	r := decodeRequest(&d)
	return r, d.done()
}

func encodeKVs(e *enc, kvs []KV) {
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.bytes(kv.Key)
		e.bytes(kv.Value)
	}
}

func decodeKVs(d *dec) []KV {
	n := d.count()
	var out []KV
	for range n {
		out = append(out, KV{Key: d.bytes(), Value: d.bytes()})
	}
	return out
}

func (r *Response) encode(e *enc) {
	if r.Err != nil {
		e.byte1(byte(r.Err.Code))
		e.u64(uint64(r.Err.Leader))
		e.bool(r.Err.Ambiguous)
		e.bytes([]byte(r.Err.Msg))
		e.bool(r.Err.Desc != nil)
		if r.Err.Desc != nil {
			r.Err.Desc.encode(e)
		}
	} else {
		e.byte1(0)
	}
	e.optBytes(r.Value)
	e.bool(r.Found)
	encodeKVs(e, r.KVs)
	e.optBytes(r.Resume)
	e.bool(r.Succeeded)
	e.u64(uint64(r.FailedOp))
	e.optBytes(r.Current)
	e.bool(r.CurrentFound)
	e.i64(r.Int)
	e.bool(r.Desc != nil)
	if r.Desc != nil {
		r.Desc.encode(e)
	}
	encodeKVs(e, r.Data)
	e.u64(uint64(r.Node))
}

func decodeResponse(d *dec) *Response {
	r := &Response{}
	if c := d.byte1(); c != 0 {
		r.Err = &Error{Code: ErrCode(c), Leader: NodeID(d.u64()), Ambiguous: d.bool(), Msg: string(d.bytes())}
		if d.bool() {
			r.Err.Desc = decodeDescriptor(d)
		}
	}
	r.Value = d.optBytes()
	r.Found = d.bool()
	r.KVs = decodeKVs(d)
	r.Resume = d.optBytes()
	r.Succeeded = d.bool()
	r.FailedOp = int(d.u64())
	r.Current = d.optBytes()
	r.CurrentFound = d.bool()
	r.Int = d.i64()
	if d.bool() {
		r.Desc = decodeDescriptor(d)
	}
	r.Data = decodeKVs(d)
	r.Node = NodeID(d.u64())
	return r
}

// EncodeResponse returns the binary form of r.
func EncodeResponse(r *Response) []byte {
	var e enc
	r.encode(&e)
	return e.b
}

// DecodeResponse parses EncodeResponse's output.
func DecodeResponse(b []byte) (*Response, error) {
	d := dec{b: b}
	r := decodeResponse(&d)
	return r, d.done()
}
