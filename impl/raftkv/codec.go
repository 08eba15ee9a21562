package raftkv

import (
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// EncodeMessage appends the binary form of m to dst. A snapshot's data
// (SnapData) goes with it when set; runtimes that stream large snapshots
// send the message without it and the data in chunks (EncodeChunk).
func EncodeMessage(dst []byte, m *Message) ([]byte, error) {
	e := enc{b: dst}
	e.byte1(byte(m.Kind))
	e.u64(uint64(m.From))
	e.u64(uint64(m.To))
	switch m.Kind {
	case MsgRaft:
		e.u64(uint64(m.Range))
		// Marshalled in place after its length: no intermediate copy of
		// the entries it carries. Size caches the sizes MarshalAppend uses.
		e.u64(uint64(proto.Size(m.Raft)))
		b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(e.b, m.Raft)
		if err != nil {
			return dst, err
		}
		e.b = b
		encodeKVs(&e, m.SnapData)
	case MsgRequest:
		e.u64(m.ID)
		e.byte1(m.Hops)
		m.Req.encode(&e)
	case MsgResponse:
		e.u64(m.ID)
		m.Resp.encode(&e)
	case MsgWatch:
		e.u64(uint64(len(m.Watch)))
		for i := range m.Watch {
			m.Watch[i].encode(&e)
		}
	}
	return e.b, nil
}

// DecodeMessage parses EncodeMessage's output.
func DecodeMessage(b []byte) (*Message, error) {
	d := dec{b: b}
	m := &Message{Kind: MsgKind(d.byte1()), From: NodeID(d.u64()), To: NodeID(d.u64())}
	switch m.Kind {
	case MsgRaft:
		m.Range = RangeID(d.u64())
		raw := d.bytes()
		if d.err == nil {
			m.Raft = &pb.Message{}
			if err := proto.Unmarshal(raw, m.Raft); err != nil {
				return nil, errCorrupt
			}
		}
		m.SnapData = decodeKVs(&d)
	case MsgRequest:
		m.ID = d.u64()
		m.Hops = d.byte1()
		m.Req = decodeRequest(&d)
	case MsgResponse:
		m.ID = d.u64()
		m.Resp = decodeResponse(&d)
	case MsgWatch:
		k := d.count()
		for range k {
			m.Watch = append(m.Watch, decodeWatchMsg(&d))
		}
	default:
		return nil, errCorrupt
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// EncodeChunk appends a chunk of snapshot data.
func EncodeChunk(dst []byte, kvs []KV) []byte {
	e := enc{b: dst}
	encodeKVs(&e, kvs)
	return e.b
}

// DecodeChunk parses EncodeChunk's output.
func DecodeChunk(b []byte) ([]KV, error) {
	d := dec{b: b}
	kvs := decodeKVs(&d)
	return kvs, d.done()
}
