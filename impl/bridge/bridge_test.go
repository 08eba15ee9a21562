package bridge

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
)

// Out and in forwarding with prefix mapping, QoS 1 end to end, properties
// carried, the loop marker added.
func TestForwardBothWays(t *testing.T) {
	t.Parallel()
	local := startSkybridge(t)
	remote := newMosquitto(t, "")
	remote.start()

	cfg := testBridge("edge-7", local.url(), remote.url())
	cfg.Out = []Rule{{Filter: "sensors/#", Prefix: "site-7/"}}
	cfg.In = []Rule{{Filter: "site-7/cmd/#", Strip: "site-7/", Prefix: "remote/"}}
	b := startBridge(t, vfs.NewMem(), cfg)

	rsub := newClient(t, remote.url(), clientOpts{filters: []string{"site-7/#"}})
	rsub.subscribed(t)
	lsub := newClient(t, local.url(), clientOpts{filters: []string{"remote/#"}})
	lsub.subscribed(t)
	eventually(t, "both bridge connections", func() bool {
		s := b.Stats().Bridges[0]
		return s.Local.Connected && s.Remote.Connected
	})

	lpub := newClient(t, local.url(), clientOpts{})
	rpub := newClient(t, remote.url(), clientOpts{})
	expiry := uint32(3600)
	format := byte(1)
	props := &paho.PublishProperties{
		ContentType: "text/plain", ResponseTopic: "sensors/reply", CorrelationData: []byte{1, 2, 3},
		MessageExpiry: &expiry, PayloadFormat: &format,
		User: paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}},
	}
	const n = 50
	for i := range n {
		lpub.publish(t, fmt.Sprintf("sensors/%d/t", i%3), fmt.Sprintf("m%05d", i), 1, props)
		rpub.publish(t, fmt.Sprintf("site-7/cmd/%d", i%2), fmt.Sprintf("m%05d", i), 1, nil)
	}
	eventually(t, "out messages at the remote subscriber", func() bool { return len(rsub.matching("site-7/sensors/")) >= n })
	eventually(t, "in messages at the local subscriber", func() bool { return len(lsub.matching("remote/cmd/")) >= n })

	out := rsub.matching("site-7/sensors/")
	order, dups := distinct(out)
	if diff := cmp.Diff(seqPayloads(0, n), order); diff != "" || dups != 0 {
		t.Fatalf("out: order (-want +got) %s; %d duplicates", diff, dups)
	}
	for i, m := range out {
		if want := fmt.Sprintf("site-7/sensors/%d/t", i%3); m.topic != want {
			t.Fatalf("out message %d: topic %q, want %q", i, m.topic, want)
		}
		if m.qos != 1 {
			t.Fatalf("out message %d: QoS %d, want 1", i, m.qos)
		}
		p := m.props
		if p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "sensors/reply" || string(p.CorrelationData) != "\x01\x02\x03" ||
			p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.MessageExpiry == nil || *p.MessageExpiry > 3600 || *p.MessageExpiry < 3500 {
			t.Fatalf("out message %d: properties not carried: %+v", i, p)
		}
		if got := m.user("k"); !slices.Equal(got, []string{"v1", "v2"}) {
			t.Fatalf("out message %d: user properties k = %q", i, got)
		}
		if got := m.user(markerKey); !slices.Equal(got, []string{"edge-7"}) {
			t.Fatalf("out message %d: marker %q", i, got)
		}
		if got := m.user(hopsKey); !slices.Equal(got, []string{"1"}) {
			t.Fatalf("out message %d: hops %q", i, got)
		}
	}
	in := lsub.matching("remote/cmd/")
	order, dups = distinct(in)
	if diff := cmp.Diff(seqPayloads(0, n), order); diff != "" || dups != 0 {
		t.Fatalf("in: order (-want +got) %s; %d duplicates", diff, dups)
	}
	for i, m := range in {
		if want := fmt.Sprintf("remote/cmd/%d", i%2); m.topic != want || m.qos != 1 {
			t.Fatalf("in message %d: %q QoS %d, want %q QoS 1", i, m.topic, m.qos, want)
		}
	}
	eventually(t, "queues drained", func() bool {
		s := b.Stats().Bridges[0]
		return s.Out.Queued == 0 && s.In.Queued == 0 && s.Out.Forwarded == n && s.In.Forwarded == n
	})
	s := b.Stats().Bridges[0]
	if s.Out.Dropped.Total() != 0 || s.In.Dropped.Total() != 0 {
		t.Fatalf("drops: out %+v in %+v", s.Out.Dropped, s.In.Dropped)
	}
}
