package broker

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// recordingRoutes is a Routes that records what the broker asks of it and
// answers from a real trie.
type recordingRoutes struct {
	tenant string
	rec    *recorder
	trie   *topic.Trie
}

type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingRoutes) log(s string) {
	r.rec.mu.Lock()
	r.rec.calls = append(r.rec.calls, r.tenant+" "+s)
	r.rec.mu.Unlock()
}

func (r *recordingRoutes) Subscribe(f []byte, s topic.Subscription) bool {
	r.log("sub " + string(f))
	return r.trie.Subscribe(f, s)
}

func (r *recordingRoutes) Unsubscribe(f []byte, id topic.SubscriberID) bool {
	r.log("unsub " + string(f))
	return r.trie.Unsubscribe(f, id)
}

func (r *recordingRoutes) Match(t []byte, m *topic.Matches) {
	r.log("match " + string(t))
	r.trie.Match(t, m)
}

func (r *recordingRoutes) Len() int { return r.trie.Len() }

// TestRoutesAreAnInterface checks that the broker keeps every tenant's
// subscriptions in the index Config.Routes gives it, one per tenant.
func TestRoutesAreAnInterface(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	cfg := DefaultConfig()
	cfg.Routes = func(tenant string) Routes {
		return &recordingRoutes{tenant: tenant, rec: rec, trie: topic.NewTrie()}
	}
	clock := env.NewManualClock(time.Unix(1_700_000_000, 0))
	h := &harness{t: t, b: New(cfg, env.Env{Clock: clock, Rand: env.NewRand(1)}, nil), clock: clock}
	red := h.dial("red", packet.V311, "red")
	red.connect("r", true, packet.Properties{})
	red.expect("CONNACK code=0x00")
	red.send(sub(1, "a/+", 0))
	red.expect("SUBACK id=1 codes=[0x00]")
	blue := h.dial("blue", packet.V311, "blue")
	blue.connect("b", true, packet.Properties{})
	blue.expect("CONNACK code=0x00")
	blue.send(pub("a/x", "hi", 0, 0))
	red.expect()
	red.send(pub("a/x", "hi", 0, 0))
	red.expect(`PUBLISH topic="a/x" qos=0 payload="hi"`)
	red.send(&packet.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("a/+")}})
	red.expect("UNSUBACK id=2")
	want := []string{"red sub a/+", "blue match a/x", "red match a/x", "red unsub a/+"}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if d := cmp.Diff(want, rec.calls); d != "" {
		t.Fatalf("calls (-want +got):\n%s", d)
	}
}
