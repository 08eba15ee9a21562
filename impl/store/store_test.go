package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// dump is a Visitor that records everything it is shown, as text, in order.
type dump struct{ lines []string }

func (d *dump) Session(t, c string, r *SessionRecord) error {
	will := "none"
	if r.Will != nil {
		will = fmt.Sprintf("%s=%s", r.Will.Topic, r.Will.Payload)
	}
	d.lines = append(d.lines, fmt.Sprintf("session %s/%s v%d expiry=%d offline=%d will=%s delay=%d", t, c, r.Version, r.Expiry, r.OfflineSince.Unix(), will, r.WillDelay))
	return nil
}

func (d *dump) Sub(t, c, f string, o topic.Options) error {
	d.lines = append(d.lines, fmt.Sprintf("sub %s/%s %s %+v", t, c, f, o))
	return nil
}

func (d *dump) Delivery(t, c string, r *DeliveryRecord) error {
	body := "-"
	if r.Msg != nil {
		body = fmt.Sprintf("%s=%s", r.Msg.Topic, r.Msg.Payload)
	}
	d.lines = append(d.lines, fmt.Sprintf("delivery %s/%s seq=%d pid=%d qos=%d state=%d %s", t, c, r.Seq, r.PID, r.QoS, r.State, body))
	return nil
}

func (d *dump) Inbound(t, c string, pid uint16) error {
	d.lines = append(d.lines, fmt.Sprintf("inbound %s/%s %d", t, c, pid))
	return nil
}

func (d *dump) Retained(t string, m *message.Message) error {
	d.lines = append(d.lines, fmt.Sprintf("retained %s %s=%s", t, m.Topic, m.Payload))
	return nil
}

func msg(topic, payload string) *message.Message {
	return &message.Message{Topic: []byte(topic), Payload: []byte(payload), QoS: 1, Owned: true}
}

func commit(t *testing.T, s *Pebble, ops ...Op) {
	t.Helper()
	var got error
	called := false
	s.Commit(&Batch{Ops: ops}, func(err error) { got, called = err, true })
	s.Step()
	if !called || got != nil {
		t.Fatalf("commit: called=%v err=%v", called, got)
	}
}

func TestPebbleRoundTrip(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	s, err := Open(fs, "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	will := msg("w", "bye")
	commit(t, s,
		Op{Kind: PutSession, Tenant: "t", ClientID: "c1", Session: &SessionRecord{Version: 5, Expiry: 60, OfflineSince: time.Unix(100, 0), Will: will, WillDelay: 5}},
		Op{Kind: PutSub, Tenant: "t", ClientID: "c1", Filter: "a/+", Options: topic.Options{QoS: 1, NoLocal: true, RetainHandling: 2, ID: 9}},
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c1", Delivery: &DeliveryRecord{Seq: 2, PID: 7, QoS: 2, SubIDs: []uint32{9}, Msg: msg("a/b", "two")}},
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c1", Delivery: &DeliveryRecord{Seq: 1, PID: 6, QoS: 1, Msg: msg("a/b", "one")}},
		Op{Kind: PutInbound, Tenant: "t", ClientID: "c1", PID: 300},
		Op{Kind: PutSession, Tenant: "t", ClientID: "c2", Session: &SessionRecord{Version: 4, Expiry: 1<<32 - 1}},
		Op{Kind: PutRetained, Tenant: "t", Message: msg("r/1", "kept")},
		Op{Kind: PutRetained, Tenant: "u", Message: msg("r/1", "other tenant")},
	)
	commit(t, s,
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c1", Delivery: &DeliveryRecord{Seq: 2, PID: 7, QoS: 2, State: Released}},
		Op{Kind: DeleteDelivery, Tenant: "t", ClientID: "c1", Seq: 1},
		Op{Kind: DeleteSession, Tenant: "t", ClientID: "c2"},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(fs, "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var d dump
	if err := s.Load(&d); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"retained t r/1=kept",
		"retained u r/1=other tenant",
		"session t/c1 v5 expiry=60 offline=100 will=w=bye delay=5",
		"inbound t/c1 300",
		"delivery t/c1 seq=2 pid=7 qos=2 state=2 -",
		"sub t/c1 a/+ {QoS:1 NoLocal:true RetainAsPublished:false RetainHandling:2 ID:9}",
	}
	if diff := cmp.Diff(want, d.lines); diff != "" {
		t.Fatalf("loaded (-want +got):\n%s", diff)
	}
}

func TestFormatVersionIsChecked(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	s, err := Open(fs, "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Set(formatKey, []byte("skybridge-store/99"), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(fs, "data", Options{})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("Open = %v, want ErrFormat", err)
	}
	for _, want := range []string{"data", "skybridge-store/99", "move the directory aside"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestCrashKeepsCommittedBatches commits random batches on a crashable
// file system, crashes at random points (unsynced data dropped, or some of
// it kept), reopens and checks that every batch whose done was called is
// there, completely, and nothing that was never written appears.
func TestCrashKeepsCommittedBatches(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		fs := vfs.NewCrashableMem()
		s, err := Open(fs, "data", Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The deliveries belong to a session (records without one are
		// orphans, which Load sets aside).
		commit(t, s, Op{Kind: PutSession, Tenant: "t", ClientID: "c", Session: &SessionRecord{Version: 5, Expiry: 60}})
		acked := map[uint64]bool{} // delivery seq → durable
		var seq uint64
		for step := 0; step < 50; step++ {
			var ops []Op
			for range 1 + r.IntN(5) {
				seq++
				ops = append(ops, Op{Kind: PutDelivery, Tenant: "t", ClientID: "c",
					Delivery: &DeliveryRecord{Seq: seq, PID: uint16(seq), QoS: 1, Msg: msg("x", fmt.Sprint(seq))}})
			}
			batchSeqs := make([]uint64, len(ops))
			for i, op := range ops {
				batchSeqs[i] = op.Delivery.Seq
			}
			s.Commit(&Batch{Ops: ops}, func(err error) {
				if err == nil {
					for _, q := range batchSeqs {
						acked[q] = true
					}
				}
			})
			if r.IntN(3) == 0 {
				s.Step()
			}
		}
		// Crash: keep a random share of what was never synced.
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: r.IntN(100), RNG: rand.New(rand.NewPCG(seed, 9))})
		s2, err := Open(clone, "data", Options{})
		if err != nil {
			t.Fatalf("seed %d: reopen after crash: %v", seed, err)
		}
		var d collect
		if err := s2.Load(&d); err != nil {
			t.Fatalf("seed %d: load: %v", seed, err)
		}
		for q := range acked {
			if !d.seqs[q] {
				t.Fatalf("seed %d: acknowledged delivery %d lost in the crash", seed, q)
			}
		}
		for q := range d.seqs {
			if q > seq || q == 0 {
				t.Fatalf("seed %d: delivery %d appeared from nowhere", seed, q)
			}
		}
		s2.Close()
		s.Close()
	}
}

type collect struct {
	dump
	seqs map[uint64]bool
}

func (c *collect) Delivery(_, _ string, r *DeliveryRecord) error {
	if c.seqs == nil {
		c.seqs = map[uint64]bool{}
	}
	if string(r.Msg.Payload) != fmt.Sprint(r.Seq) {
		return fmt.Errorf("delivery %d holds %q", r.Seq, r.Msg.Payload)
	}
	c.seqs[r.Seq] = true
	return nil
}

func TestMessageCodecRoundTrip(t *testing.T) {
	t.Parallel()
	m := &message.Message{Topic: []byte("a/b"), Payload: []byte{0, 1, 2}, QoS: packet.QoS2, Retain: true,
		Expiry: time.Unix(1000, 5), PublisherKey: 42, Owned: true}
	m.Properties.PayloadFormat = 1
	m.Properties.ContentType = []byte("text/plain")
	m.Properties.ResponseTopic = []byte("re")
	m.Properties.CorrelationData = []byte{9}
	m.Properties.User = []packet.UserProperty{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k"), Value: []byte("w")}}
	m.Properties.Set(packet.PropPayloadFormat)
	m.Properties.Set(packet.PropContentType)
	m.Properties.Set(packet.PropResponseTopic)
	m.Properties.Set(packet.PropCorrelationData)
	got, err := decodeRetained(encodeRetained(nil, m))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(m, got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(message.Message{})); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// FuzzDecode checks that no stored value, however damaged, makes a decoder
// panic: a corrupted store is reported, never crashes the broker.
func FuzzDecode(f *testing.F) {
	f.Add(encodeSession(nil, &SessionRecord{Version: 5, Expiry: 3, Will: msg("w", "x")}))
	f.Add(encodeDelivery(nil, &DeliveryRecord{Seq: 1, PID: 2, QoS: 1, SubIDs: []uint32{3}, Msg: msg("t", "p")}))
	f.Add(encodeOptions(nil, topic.Options{QoS: 2, ID: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeSession(b)
		_, _ = decodeDelivery(1, b)
		_, _ = decodeOptions(b)
		_, _ = decodeRetained(b)
		_, _ = parseKey(b)
	})
}

// TestDiskFullIsAnError: when the file system refuses writes (a full disk),
// a commit fails with an error naming the directory; nothing panics, and
// once space is back commits succeed again.
func TestDiskFullIsAnError(t *testing.T) {
	t.Parallel()
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return fmt.Errorf("%w: %s", syscall.ENOSPC, op.Path)
		}
		return nil
	}))
	s, err := Open(fs, "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		full.Store(false)
		s.Close()
	}()
	full.Store(true)
	var got error
	s.Commit(&Batch{Ops: []Op{{Kind: PutRetained, Tenant: "t", Message: msg("a", "b")}}}, func(err error) { got = err })
	s.Step()
	if got == nil {
		t.Fatal("a commit on a full disk succeeded")
	}
	if !contains(got.Error(), "data") || !contains(got.Error(), "restart") {
		t.Errorf("error %q does not name the directory and what to do", got)
	}
	// The store stays stopped: Pebble cannot go on after a failed WAL write.
	s.Commit(&Batch{}, func(err error) { got = err })
	s.Step()
	if got == nil || s.Err() == nil {
		t.Fatal("the store accepted a commit after a fatal write error")
	}
}

// TestLowDiskSpaceRefusesCommits: with the disk below the reserve, commits
// fail cleanly before Pebble meets a full disk; with space back, they work.
func TestLowDiskSpaceRefusesCommits(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 20, TotalBytes: 1 << 30})
	s, err := Open(fs, "data", Options{MinFreeBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got error
	s.Commit(&Batch{Ops: []Op{{Kind: PutRetained, Tenant: "t", Message: msg("a", "b")}}}, func(err error) { got = err })
	s.Step()
	if !errors.Is(got, ErrDiskFull) || !contains(got.Error(), "free disk space") {
		t.Fatalf("commit with 1 MiB free = %v, want ErrDiskFull saying what to do", got)
	}
	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 1 << 31})
	s.Commit(&Batch{Ops: []Op{{Kind: PutRetained, Tenant: "t", Message: msg("a", "b")}}}, func(err error) { got = err })
	s.Step()
	if got != nil {
		t.Fatalf("commit with space back: %v", got)
	}
}

// TestCorruptRecordIsQuarantined: records Load cannot read do not stop the
// broker from starting. A damaged value, a key no version wrote (the one a
// tenant name holding U+0000 made before names were escaped and validated)
// and the records of a session whose own record is unreadable are moved
// under the quarantine prefix, logged and counted; the rest loads, and the
// next start finds nothing to quarantine.
func TestCorruptRecordIsQuarantined(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	var logged bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	s, err := Open(fs, "data", opts)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s,
		Op{Kind: PutSession, Tenant: "t", ClientID: "good", Session: &SessionRecord{Version: 5, Expiry: 60}},
		Op{Kind: PutSub, Tenant: "t", ClientID: "good", Filter: "a/#", Options: topic.Options{QoS: 1}},
		Op{Kind: PutSession, Tenant: "t", ClientID: "bad", Session: &SessionRecord{Version: 5, Expiry: 60}},
		Op{Kind: PutSub, Tenant: "t", ClientID: "bad", Filter: "b/#", Options: topic.Options{QoS: 1}},
		Op{Kind: PutRetained, Tenant: "t", Message: msg("r", "kept")})
	for _, kv := range []struct{ k, v []byte }{
		{sessionKey(nil, "t", "bad"), []byte{1, 5, 0xff}}, // damaged value
		// What tenant "t1\x00status" wrote with unescaped keys: kind 'c' (99).
		{[]byte("st1\x00status\x00client\x00\x01"), encodeSession(nil, &SessionRecord{Version: 5})},
		// A delivery of a session that has no record.
		{deliveryKey(nil, "t", "ghost", 1), encodeDelivery(nil, &DeliveryRecord{Seq: 1, PID: 1, QoS: 1, Msg: msg("x", "1")})},
	} {
		if err := s.db.Set(kv.k, kv.v, nil); err != nil {
			t.Fatal(err)
		}
	}
	var d dump
	if err := s.Load(&d); err != nil {
		t.Fatalf("Load = %v, want the readable records loaded and the rest quarantined", err)
	}
	want := []string{
		"retained t r=kept",
		"session t/good v5 expiry=60 offline=-62135596800 will=none delay=0",
		"sub t/good a/# {QoS:1 NoLocal:false RetainAsPublished:false RetainHandling:0 ID:0}",
	}
	if diff := cmp.Diff(want, d.lines); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if got := s.Quarantined(); got != 4 {
		t.Errorf("Quarantined = %d, want 4 (bad session, its sub, the 'c' key, the orphan delivery)", got)
	}
	for _, w := range []string{"unreadable record quarantined", "orphan", "count=4"} {
		if !strings.Contains(logged.String(), w) {
			t.Errorf("log does not say %q:\n%s", w, logged.String())
		}
	}
	s.Close()

	s2, err := Open(fs, "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var again dump
	if err := s2.Load(&again); err != nil || s2.Quarantined() != 0 {
		t.Fatalf("second Load = %v, quarantined %d; want nil, 0", err, s2.Quarantined())
	}
	if diff := cmp.Diff(want, again.lines); diff != "" {
		t.Errorf("second load (-want +got):\n%s", diff)
	}
	n := 0
	it, _ := s2.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'q'}, UpperBound: []byte{'r'}})
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	it.Close()
	if n != 4 {
		t.Errorf("%d records under the quarantine prefix, want 4", n)
	}
}

// Escaped names cannot reach another name's keys: a tenant or client id
// holding 0x00 or 0xFF round-trips and stays inside its own prefix.
func TestKeyEscaping(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ tenant, client string }{
		{"t", "c"}, {"t1\x00status", "c"}, {"t", "a\x00b"}, {"\xff", "\xff\x01"}, {"t\xff\x02", "\x00"},
	} {
		k := deliveryKey(nil, tt.tenant, tt.client, 7)
		pk, err := parseKey(k)
		if err != nil || pk.tenant != tt.tenant || pk.clientID != tt.client || pk.kind != kindDelivery {
			t.Errorf("%q/%q: parseKey(%q) = %+v, %v", tt.tenant, tt.client, k, pk, err)
		}
		other := sessionPrefix(nil, "t1", "status")
		if tt.tenant != "t1" && bytes.HasPrefix(k, other) {
			t.Errorf("%q/%q: key %q falls under %q", tt.tenant, tt.client, k, other)
		}
		if bytes.IndexByte(appendEscaped(nil, tt.tenant), 0) >= 0 {
			t.Errorf("escaped %q holds 0x00", tt.tenant)
		}
	}
	for _, bad := range []string{"\xff", "\xff\x03", "a\xff"} {
		if _, ok := unescape([]byte(bad)); ok {
			t.Errorf("unescape(%q) accepted", bad)
		}
	}
}

// TestCloseWhileRunning closes the store while Run commits and writers keep
// committing: every batch is answered (committed or ErrClosed), nothing
// races (run with -race), and Close returns only after Run's last group.
func TestCloseWhileRunning(t *testing.T) {
	t.Parallel()
	for round := 0; round < 20; round++ {
		s, err := Open(vfs.NewMem(), "data", Options{})
		if err != nil {
			t.Fatal(err)
		}
		go s.Run()
		var wg sync.WaitGroup
		var answered, committed atomic.Int64
		const writers, each = 4, 50
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					b := &Batch{}
					b.Add(Op{Kind: PutRetained, Tenant: "t", Message: msg(fmt.Sprintf("r/%d/%d", w, i), "x")})
					s.Commit(b, func(err error) {
						answered.Add(1)
						if err == nil {
							committed.Add(1)
						} else if !errors.Is(err, ErrClosed) {
							t.Errorf("commit: %v", err)
						}
					})
				}
			}()
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if got := answered.Load(); got != writers*each {
			t.Fatalf("round %d: %d of %d batches answered", round, got, writers*each)
		}
	}
}

// Runs of adjacent removals of consecutive queue entries are written as one
// range deletion; what the store then holds must be exactly what removing
// them one by one leaves, whatever else the run meets: another session,
// a gap, an entry put and removed within the group, a session (or tenant)
// whose name extends the other's.
func TestQueueRemovalRuns(t *testing.T) {
	t.Parallel()
	put := func(c string, seq uint64, fresh bool) Op {
		return Op{Kind: PutDelivery, Tenant: "t", ClientID: c, Fresh: fresh,
			Delivery: &DeliveryRecord{Seq: seq, PID: uint16(seq), QoS: 1, Msg: msg("a", fmt.Sprint(seq))}}
	}
	del := func(c string, seq uint64) Op { return Op{Kind: DeleteDelivery, Tenant: "t", ClientID: c, Seq: seq} }
	for _, tc := range []struct {
		name   string
		second func(first []Op) []Op // the second group, given the first's puts
		want   []string
	}{
		{"one run", func([]Op) []Op { return []Op{del("c", 3), del("c", 4), del("c", 5), del("c", 6)} },
			[]string{"c 1", "c 2", "c 7", "c 8", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5", "c1 6", "c1 7", "c1 8"}},
		{"a gap ends a run", func([]Op) []Op { return []Op{del("c", 2), del("c", 3), del("c", 5), del("c", 6)} },
			[]string{"c 1", "c 4", "c 7", "c 8", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5", "c1 6", "c1 7", "c1 8"}},
		{"another session ends a run", func([]Op) []Op { return []Op{del("c", 1), del("c", 2), del("c1", 3), del("c1", 4), del("c", 5)} },
			[]string{"c 3", "c 4", "c 6", "c 7", "c 8", "c1 1", "c1 2", "c1 5", "c1 6", "c1 7", "c1 8"}},
		{"the last entry", func([]Op) []Op { return []Op{del("c", 7), del("c", 8)} },
			[]string{"c 1", "c 2", "c 3", "c 4", "c 5", "c 6", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5", "c1 6", "c1 7", "c1 8"}},
		{"entries put and removed in the group", func(first []Op) []Op {
			p9, p10 := put("c", 9, true), put("c", 10, true)
			d9, d10 := del("c", 9), del("c", 10)
			d9.Delivery, d10.Delivery = p9.Delivery, p10.Delivery
			return []Op{p9, p10, del("c", 7), del("c", 8), d9, d10, put("c", 11, true)}
		}, []string{"c 1", "c 2", "c 3", "c 4", "c 5", "c 6", "c 11", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5", "c1 6", "c1 7", "c1 8"}},
		{"a run wholly put and removed in the group", func(first []Op) []Op {
			p9, p10 := put("c", 9, true), put("c", 10, true)
			d9, d10 := del("c", 9), del("c", 10)
			d9.Delivery, d10.Delivery = p9.Delivery, p10.Delivery
			return []Op{p9, p10, d9, d10}
		}, []string{"c 1", "c 2", "c 3", "c 4", "c 5", "c 6", "c 7", "c 8", "c1 1", "c1 2", "c1 3", "c1 4", "c1 5", "c1 6", "c1 7", "c1 8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := Open(vfs.NewMem(), "data", Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var first []Op
			for _, c := range []string{"c", "c1"} {
				first = append(first, Op{Kind: PutSession, Tenant: "t", ClientID: c, Session: &SessionRecord{Version: 4, Expiry: 60}})
				for seq := uint64(1); seq <= 8; seq++ {
					first = append(first, put(c, seq, false))
				}
			}
			commit(t, s, first...)
			commit(t, s, tc.second(first)...)
			var got []string
			if err := s.Load(visitDeliveries(func(c string, r *DeliveryRecord) {
				got = append(got, fmt.Sprintf("%s %d", c, r.Seq))
			})); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("queue entries left (-want +got):\n%s", diff)
			}
		})
	}
}

// visitDeliveries is a Visitor that reports queue entries only.
type visitDeliveries func(clientID string, r *DeliveryRecord)

func (visitDeliveries) Session(string, string, *SessionRecord) error    { return nil }
func (visitDeliveries) Sub(string, string, string, topic.Options) error { return nil }
func (v visitDeliveries) Delivery(_, c string, r *DeliveryRecord) error { v(c, r); return nil }
func (visitDeliveries) Inbound(string, string, uint16) error            { return nil }
func (visitDeliveries) Retained(string, *message.Message) error         { return nil }

// A queue entry whose removal was written first (in an earlier group, or
// earlier in the same one) is not written: it would come back after a
// restart and never be removed.
func TestRemovalBeforeItsEntry(t *testing.T) {
	t.Parallel()
	s, err := Open(vfs.NewMem(), "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := func(seq uint64) *DeliveryRecord {
		return &DeliveryRecord{Seq: seq, PID: uint16(seq), QoS: 1, Msg: msg("a", fmt.Sprint(seq))}
	}
	r1, r2, r3 := rec(1), rec(2), rec(3)
	commit(t, s, Op{Kind: PutSession, Tenant: "t", ClientID: "c", Session: &SessionRecord{Version: 4, Expiry: 60}})
	commit(t, s, Op{Kind: DeleteDelivery, Tenant: "t", ClientID: "c", Seq: 1, Delivery: r1}) // an earlier group
	commit(t, s, Op{Kind: PutDelivery, Tenant: "t", ClientID: "c", Delivery: r1, Fresh: true},
		// the same group: a run of removals, then the entries
		Op{Kind: DeleteDelivery, Tenant: "t", ClientID: "c", Seq: 2, Delivery: r2},
		Op{Kind: DeleteDelivery, Tenant: "t", ClientID: "c", Seq: 3, Delivery: r3},
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c", Delivery: r2, Fresh: true},
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c", Delivery: r3},
		Op{Kind: PutDelivery, Tenant: "t", ClientID: "c", Delivery: rec(4), Fresh: true})
	var got []uint64
	if err := s.Load(visitDeliveries(func(_ string, r *DeliveryRecord) { got = append(got, r.Seq) })); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{4}, got); diff != "" {
		t.Fatalf("queue entries (-want +got):\n%s", diff)
	}
	for _, r := range []*DeliveryRecord{r1, r2, r3} {
		if !r.Removed() {
			t.Errorf("entry %d not reported removed", r.Seq)
		}
	}
}

// Removals of consecutive entries gathered across the batches of one group
// (one deletion written at the end of the run) leave what removing them one
// by one leaves, also with other ops of the session in between.
func TestQueueRemovalRunAcrossBatches(t *testing.T) {
	t.Parallel()
	s, err := Open(vfs.NewMem(), "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(c string, seq uint64) Op {
		return Op{Kind: PutDelivery, Tenant: "t", ClientID: c, Fresh: true,
			Delivery: &DeliveryRecord{Seq: seq, PID: uint16(seq), QoS: 1, Msg: msg("a", fmt.Sprint(seq))}}
	}
	del := func(c string, seq uint64) Op { return Op{Kind: DeleteDelivery, Tenant: "t", ClientID: c, Seq: seq} }
	var first []Op
	for _, c := range []string{"c", "d"} {
		first = append(first, Op{Kind: PutSession, Tenant: "t", ClientID: c, Session: &SessionRecord{Version: 4, Expiry: 60}})
		for seq := uint64(1); seq <= 8; seq++ {
			first = append(first, put(c, seq))
		}
	}
	commit(t, s, first...)
	done := 0
	for _, b := range [][]Op{
		{del("c", 1), del("c", 2)},
		{put("c", 9), put("d", 9), del("c", 3)}, // a later entry of c, another session's
		{del("c", 4), {Kind: PutSub, Tenant: "t", ClientID: "c", Filter: "x"}, del("c", 5)}, // c's subscription ends the run
		{del("d", 2), del("c", 6)}, // another session's removal ends it too
		{del("c", 7)},
	} {
		s.Commit(&Batch{Ops: b}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			done++
		})
	}
	if n := s.Step(); n != 5 || done != 5 {
		t.Fatalf("one group of %d batches, %d done; want 5", n, done)
	}
	var got []string
	if err := s.Load(visitDeliveries(func(c string, r *DeliveryRecord) { got = append(got, fmt.Sprintf("%s %d", c, r.Seq)) })); err != nil {
		t.Fatal(err)
	}
	want := []string{"c 8", "c 9", "d 1", "d 3", "d 4", "d 5", "d 6", "d 7", "d 8", "d 9"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("queue entries left (-want +got):\n%s", diff)
	}
}

// The ops of a session incarnation that reach the store after the
// DeleteSession that ends it are not written; a new incarnation's are.
func TestOpsOfEndedIncarnationSkipped(t *testing.T) {
	t.Parallel()
	s, err := Open(vfs.NewMem(), "data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old, cur := new(Epoch), new(Epoch)
	entry := func(e *Epoch, seq uint64) Op {
		return Op{Kind: PutDelivery, Tenant: "t", ClientID: "c", Epoch: e,
			Delivery: &DeliveryRecord{Seq: seq, PID: uint16(seq), QoS: 1, Msg: msg("a", fmt.Sprint(seq))}}
	}
	commit(t, s, Op{Kind: PutSession, Tenant: "t", ClientID: "c", Epoch: old, Session: &SessionRecord{Version: 4, Expiry: 60}}, entry(old, 1))
	commit(t, s, Op{Kind: DeleteSession, Tenant: "t", ClientID: "c", Epoch: old},
		Op{Kind: PutSession, Tenant: "t", ClientID: "c", Epoch: cur, Session: &SessionRecord{Version: 5, Expiry: 60}},
		entry(old, 2)) // late, in the same group
	commit(t, s, entry(old, 3), entry(cur, 4)) // late, in a later group; and the new session's
	if !old.Ended() || cur.Ended() {
		t.Fatalf("ended: old %v, current %v", old.Ended(), cur.Ended())
	}
	var got []uint64
	if err := s.Load(visitDeliveries(func(_ string, r *DeliveryRecord) { got = append(got, r.Seq) })); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{4}, got); diff != "" {
		t.Fatalf("queue entries (-want +got):\n%s", diff)
	}
}

// A session record keeps its owner; one written before owners were kept
// (it ends after the will) reads with OwnerKnown false.
func TestSessionOwnerCodec(t *testing.T) {
	t.Parallel()
	for _, r := range []SessionRecord{
		{Version: 5, Expiry: 60, Owner: "alice", OwnerKnown: true},
		{Version: 4, Expiry: 7, Owner: "", OwnerKnown: true}, // an anonymous owner
		{Version: 5, Expiry: 1, Will: msg("w", "bye"), WillDelay: 3, Owner: "bob", OwnerKnown: true},
		{Version: 5, Expiry: 9}, // legacy: no owner
	} {
		got, err := decodeSession(encodeSession(nil, &r))
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got.Owner != r.Owner || got.OwnerKnown != r.OwnerKnown || got.Expiry != r.Expiry {
			t.Errorf("round trip of %+v = %+v", r, got)
		}
	}
	legacy := encodeSession(nil, &SessionRecord{Version: 5, Expiry: 9})
	if _, err := decodeSession(append(legacy, 7)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown owner flag: %v, want ErrCorrupt", err)
	}
}

// TestNewStoreSurvivesPowerLoss: a store made in a new nested directory
// keeps a synced commit through a power loss that keeps nothing unsynced
// (the directory entries leading to it are synced at Open).
func TestNewStoreSurvivesPowerLoss(t *testing.T) {
	t.Parallel()
	fs := vfs.NewCrashableMem()
	s, err := Open(fs, "var/lib/skybridge/data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit(t, s, Op{Kind: PutRetained, Tenant: "t", Message: msg("r/1", "kept")})
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2, err := Open(clone, "var/lib/skybridge/data", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var d dump
	if err := s2.Load(&d); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"retained t r/1=kept"}, d.lines); diff != "" {
		t.Fatalf("after the power loss (-want +got):\n%s", diff)
	}
}
