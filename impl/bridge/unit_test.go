package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		f, t string
		want bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/", true}, {"a/+", "a", false},
		{"a/+", "a/b/c", false}, {"a/#", "a", true}, {"a/#", "a/b/c", true}, {"a/#", "ab", false}, {"#", "a/b", true},
		{"+", "a", true}, {"+", "a/b", false}, {"+/+", "/x", true}, {"#", "$SYS/x", false}, {"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true}, {"a/b", "a/b/c", false}, {"a/b/c", "a/b", false}, {"a//b", "a//b", true},
	} {
		if got := match(tc.f, tc.t); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.f, tc.t, got, tc.want)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/#", "a", true}, {"a", "a/#", true},
		{"a/+", "a", false}, {"+/b", "a/+", true}, {"#", "x/y/z", true}, {"#", "$SYS/x", false}, {"$SYS/#", "+/x", false},
		{"$SYS/#", "$SYS/+", true}, {"a/b/c", "a/+/d", false}, {"a/+/c", "+/b/+", true}, {"a/b", "a/b/c", false},
		{"sensors/#", "site-7/#", false}, {"s/+/x", "s/a/#", true},
	} {
		if got := filtersOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := filtersOverlap(tc.b, tc.a); got != tc.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
	// Against brute force: two filters overlap iff a topic matches both.
	levels := []string{"a", "b", "+", "#", "$s", ""}
	topics := []string{}
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, l := range []string{"a", "b", "$s", "", "c"} {
			t := l
			if prefix != "" || depth < 3 {
				t = prefix + "/" + l
			}
			if depth == 3 {
				t = l
			}
			topics = append(topics, t)
			gen(t, depth-1)
		}
	}
	gen("", 3)
	filters := []string{}
	var genF func(prefix string, depth int)
	genF = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, l := range levels {
			f := l
			if depth != 3 {
				f = prefix + "/" + l
			}
			if validFilterForTest(f) {
				filters = append(filters, f)
			}
			if l != "#" {
				genF(f, depth-1)
			}
		}
	}
	genF("", 3)
	for _, a := range filters {
		for _, b := range filters {
			brute := false
			for _, tp := range topics {
				if match(a, tp) && match(b, tp) {
					brute = true
					break
				}
			}
			if got := filtersOverlap(a, b); got != brute {
				t.Fatalf("filtersOverlap(%q, %q) = %v, brute force says %v", a, b, got, brute)
			}
		}
	}
}

func validFilterForTest(f string) bool {
	for i, l := range bytes.Split([]byte(f), []byte("/")) {
		if bytes.Equal(l, []byte("#")) && i != len(bytes.Split([]byte(f), []byte("/")))-1 {
			return false
		}
	}
	return f != ""
}

func TestMapTopic(t *testing.T) {
	for _, tc := range []struct {
		r    Rule
		in   string
		want string
		ok   bool
	}{
		{Rule{Filter: "sensors/#", Prefix: "site-7/"}, "sensors/a/t", "site-7/sensors/a/t", true},
		{Rule{Filter: "sensors/#", Prefix: "site-7/"}, "sensors", "site-7/sensors", true},
		{Rule{Filter: "site-7/cmd/#", Strip: "site-7/"}, "site-7/cmd/x", "cmd/x", true},
		{Rule{Filter: "site-7/cmd/#", Strip: "site-7/cmd/", Prefix: "c/"}, "site-7/cmd", "c", true},
		{Rule{Filter: "site-7/#", Strip: "site-7/"}, "site-7", "", false},
		{Rule{Filter: "a/#"}, "a/b", "a/b", true},
	} {
		got, ok := tc.r.mapTopic(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%+v.mapTopic(%q) = %q, %v; want %q, %v", tc.r, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMarkers(t *testing.T) {
	u := []userProp{{"k", "v"}, {markerKey, "a"}, {hopsKey, "1"}}
	if crossed(u, "b") || !crossed(u, "a") {
		t.Fatal("crossed")
	}
	if h := hops(u); h != 1 {
		t.Fatalf("hops = %d", h)
	}
	got := mark(u, "b", hops(u))
	want := []userProp{{"k", "v"}, {markerKey, "a"}, {markerKey, "b"}, {hopsKey, "2"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(userProp{})); diff != "" {
		t.Fatalf("mark (-want +got):\n%s", diff)
	}
	// A hop count stripped by someone still counts the markers.
	if h := hops([]userProp{{markerKey, "a"}, {markerKey, "b"}}); h != 2 {
		t.Fatalf("hops without a count = %d", h)
	}
}

func sampleRecord() *record {
	return &record{qos: 1, retain: true, topic: "site-7/sensors/a", expiry: 1234567890123, payloadFormat: 1, hasFormat: true,
		contentType: "text/plain", responseTopic: "r/t", correlationData: []byte{0, 1}, payload: []byte("hello"),
		user: []userProp{{"k", "v"}, {markerKey, "x"}, {hopsKey, "1"}}}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []*record{sampleRecord(), {topic: "t"}, {qos: 1, topic: "t", payload: []byte{}}} {
		r.seq = 9
		got, err := decodeRecord(9, r.encode(nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.payload) == 0 {
			r.payload = nil
		}
		if len(got.payload) == 0 {
			got.payload = nil
		}
		if diff := cmp.Diff(r, got, cmp.AllowUnexported(record{}, userProp{})); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
	// Every truncation is an error, never a panic.
	b := sampleRecord().encode(nil)
	for i := range len(b) {
		if _, err := decodeRecord(1, b[:i]); !errors.Is(err, errCorrupt) {
			t.Fatalf("truncated to %d: err = %v", i, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord().encode(nil))
	f.Add((&record{topic: "t"}).encode(nil))
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(1, b)
		if err != nil {
			return
		}
		// What decodes re-encodes to a record that decodes the same
		// (varints need not be minimal, so the bytes may differ).
		again, err := decodeRecord(1, r.encode(nil))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if diff := cmp.Diff(r, again, cmp.AllowUnexported(record{}, userProp{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func openTestQueue(t *testing.T, fs vfs.FS, opts queueOptions) *queue {
	t.Helper()
	q, err := openQueue(fs, "q", opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// appendSync appends and waits for durability.
func appendSync(t *testing.T, q *queue, dir int, payload string) {
	t.Helper()
	done := make(chan error, 1)
	r := &record{qos: 1, topic: "t", payload: []byte(payload)}
	if _, err := q.append(dir, r.encode(nil), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func payloads(t *testing.T, q *queue, dir int) []string {
	t.Helper()
	recs, _, err := q.read(dir, 0, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		s = append(s, string(r.payload))
	}
	return s
}

func TestQueueOrderRemoveReopen(t *testing.T) {
	fs := vfs.NewMem()
	q := openTestQueue(t, fs, queueOptions{maxMessages: 100, maxBytes: 1 << 20, dropOldest: true})
	for i := range 10 {
		appendSync(t, q, dirOut, fmt.Sprint("o", i))
		appendSync(t, q, dirIn, fmt.Sprint("i", i))
	}
	recs, _, _ := q.read(dirOut, 0, 3, nil)
	if len(recs) != 3 || recs[0].seq != 1 || recs[2].seq != 3 {
		t.Fatalf("read 3: %+v", recs)
	}
	// Acknowledged out of order.
	for _, seq := range []uint64{3, 1, 7} {
		if !q.remove(dirOut, seq, nil) {
			t.Fatalf("remove %d", seq)
		}
	}
	if q.remove(dirOut, 3, nil) {
		t.Fatal("removed twice")
	}
	want := []string{"o1", "o3", "o4", "o5", "o7", "o8", "o9"}
	if diff := cmp.Diff(want, payloads(t, q, dirOut)); diff != "" {
		t.Fatalf("out (-want +got):\n%s", diff)
	}
	if recs, _, _ := q.read(dirOut, 6, 10, nil); len(recs) != 4 || recs[0].seq != 6 || recs[1].seq != 8 {
		t.Fatalf("read from 6: %+v", recs)
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	q = openTestQueue(t, fs, queueOptions{maxMessages: 100, maxBytes: 1 << 20, dropOldest: true})
	defer q.close()
	if diff := cmp.Diff(want, payloads(t, q, dirOut)); diff != "" {
		t.Fatalf("out after reopening (-want +got):\n%s", diff)
	}
	if n, _, _ := q.stats(dirIn); n != 10 {
		t.Fatalf("in after reopening: %d", n)
	}
	appendSync(t, q, dirOut, "new")
	if recs, _, _ := q.read(dirOut, 0, 100, nil); recs[len(recs)-1].seq != 11 {
		t.Fatalf("sequence after reopening: %d", recs[len(recs)-1].seq)
	}
}

func TestQueueBounds(t *testing.T) {
	size := len((&record{qos: 1, topic: "t", payload: []byte("p0")}).encode(nil))
	for _, tc := range []struct {
		name string
		opts queueOptions
		want []string
		drop uint64
	}{
		{"messages, drop oldest", queueOptions{maxMessages: 3, maxBytes: 1 << 20, dropOldest: true}, []string{"p2", "p3", "p4"}, 2},
		{"messages, refuse new", queueOptions{maxMessages: 3, maxBytes: 1 << 20}, []string{"p0", "p1", "p2"}, 2},
		{"bytes, drop oldest", queueOptions{maxMessages: 100, maxBytes: int64(2 * size), dropOldest: true}, []string{"p3", "p4"}, 3},
		{"bytes, refuse new", queueOptions{maxMessages: 100, maxBytes: int64(2 * size)}, []string{"p0", "p1"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := openTestQueue(t, vfs.NewMem(), tc.opts)
			defer q.close()
			for i := range 5 {
				r := &record{qos: 1, topic: "t", payload: []byte(fmt.Sprint("p", i))}
				done := make(chan error, 1)
				_, err := q.append(dirOut, r.encode(nil), func(err error) { done <- err })
				if err == nil {
					<-done
				} else if !errors.Is(err, errQueueFull) {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.want, payloads(t, q, dirOut)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if _, _, d := q.stats(dirOut); d != tc.drop {
				t.Fatalf("dropped %d, want %d", d, tc.drop)
			}
			// A message larger than the whole byte bound never fits.
			big := &record{topic: "t", payload: make([]byte, tc.opts.maxBytes)}
			if _, err := q.append(dirOut, big.encode(nil), nil); !errors.Is(err, errQueueFull) {
				t.Fatalf("oversized: %v", err)
			}
		})
	}
}

// Whatever the queue reported durable survives a crash at any moment.
func TestQueueCrash(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	opts := queueOptions{maxMessages: 1 << 20, maxBytes: 1 << 30, dropOldest: true}
	for round := range 20 {
		mem := vfs.NewCrashableMem()
		q := openTestQueue(t, mem, opts)
		n := 1 + rng.IntN(300)
		crashAt := rng.IntN(n)
		var mu sync.Mutex
		var durable, want []string
		var crashed vfs.FS
		for i := range n {
			p := fmt.Sprint(round, "-", i)
			r := &record{qos: 1, topic: "t", payload: []byte(p)}
			if _, err := q.append(dirOut, r.encode(nil), func(err error) {
				if err == nil {
					mu.Lock()
					durable = append(durable, p)
					mu.Unlock()
				}
			}); err != nil {
				t.Fatal(err)
			}
			if i == crashAt {
				// Appends still in flight may or may not survive; those
				// reported durable must.
				mu.Lock()
				want = append([]string(nil), durable...)
				crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng})
				mu.Unlock()
			}
		}
		q.close()
		q2 := openTestQueue(t, crashed, opts)
		got := payloads(t, q2, dirOut)
		q2.close()
		if len(got) < len(want) {
			t.Fatalf("round %d: %d messages after the crash, %d were durable", round, len(got), len(want))
		}
		if diff := cmp.Diff(want, got[:len(want)], cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round %d: durable prefix (-want +got):\n%s", round, diff)
		}
	}
}

// A record that cannot be read back is removed and reported, and the rest
// of the queue keeps moving.
func TestQueueDamagedRecord(t *testing.T) {
	q := openTestQueue(t, vfs.NewMem(), queueOptions{maxMessages: 10, maxBytes: 1 << 20})
	defer q.close()
	for _, p := range []string{"a", "b", "c"} {
		appendSync(t, q, dirIn, p)
	}
	if err := q.db.Set(queueKey(dirIn, 2), []byte{9, 9, 9}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	recs, damaged, err := q.read(dirIn, 0, 10, nil)
	if err != nil || len(recs) != 2 || string(recs[0].payload) != "a" || string(recs[1].payload) != "c" || !slices.Equal(damaged, []uint64{2}) {
		t.Fatalf("read: %d records, damaged %v, err %v", len(recs), damaged, err)
	}
	if q.has(dirIn, 2) {
		t.Fatal("damaged record still queued")
	}
}

// formatKey is where store.CheckFormat keeps a database's format marker.
var formatKey = []byte("\x00format")

// A directory that is not a bridge queue is refused with what to do.
func TestQueueFormat(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pebble.Open("other", &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := openQueue(fs, "other", queueOptions{maxMessages: 1, maxBytes: 1024}); err == nil || !strings.Contains(err.Error(), "not a bridge queue") {
		t.Fatalf("err = %v", err)
	}
	q := openTestQueue(t, fs, queueOptions{maxMessages: 1, maxBytes: 1024})
	if err := q.db.Set(formatKey, []byte("skybridge-bridge-queue/99"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	q.close()
	if _, err := openQueue(fs, "q", queueOptions{maxMessages: 1, maxBytes: 1024}); err == nil || !strings.Contains(err.Error(), "move the directory aside") {
		t.Fatalf("err = %v", err)
	}
}
