package raftkv

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/testing/protocmp"
)

func sampleMessages() []*Message {
	d := &Descriptor{RangeID: 7, Start: []byte("ua"), End: []byte("uz"), Gen: 3,
		Replicas: []ReplicaDesc{{1, 1}, {2, 2}}, NextReplicaID: 3, Voters: []uint64{1, 2}}
	return []*Message{
		{Kind: MsgRaft, From: 1, To: 2, Range: 7, Raft: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)),
			Entries: []*pb.Entry{{Index: new(uint64(11)), Term: new(uint64(5)), Data: []byte("x")}}}},
		{Kind: MsgRaft, From: 1, To: 2, Range: 7, Raft: &pb.Message{Type: pb.MsgSnap.Enum()}, SnapData: []KV{{[]byte("ua"), []byte("1")}}},
		{Kind: MsgRequest, From: 3, To: 1, ID: 9, Hops: 1, Req: &Request{Kind: ReqWrite, Ops: []Op{{Kind: OpCAS, Key: []byte("k"), Expect: []byte("a"), Value: []byte("b")}}}},
		{Kind: MsgResponse, From: 1, To: 3, ID: 9, Resp: &Response{Err: &Error{Code: ErrRangeMoved, Desc: d, Msg: "moved"}}},
		{Kind: MsgResponse, From: 1, To: 3, ID: 10, Resp: &Response{Succeeded: true, KVs: []KV{{[]byte("a"), []byte("b")}}, Resume: []byte("c"), Node: 1}},
		{Kind: MsgWatch, From: 2, To: 1, Watch: []WatchMsg{{Op: WatchChange, ID: 4, Part: 1, Gen: 2, Seq: 3, Key: []byte("uk"), Value: []byte("v")}}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMessages() {
		b, err := EncodeMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if diff := cmp.Diff(m, got, protocmp.Transform(), cmpopts.EquateEmpty(), cmp.AllowUnexported(Request{})); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// FuzzDecodeMessage: no input makes a decoder panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := EncodeMessage(nil, m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := DecodeMessage(b); err == nil {
			if _, err := EncodeMessage(nil, m); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = DecodeRequest(b)
		_, _ = DecodeResponse(b)
		_, _ = DecodeDescriptor(b)
		_, _ = DecodeChunk(b)
		_, _ = DecodeWatchEvent(1, b)
		_, _ = decodeAppliedState(b)
		_, _ = decodeConfContext(b)
	})
}
