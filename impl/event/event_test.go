package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)

var alice = Who{Tenant: "acme", ClientID: "c1", User: "alice"}

func TestConstructors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    Event
		want string
	}{
		{NewConnected(t0, alice, "tcp", "127.0.0.1:5", "5.0"), "connected tenant=acme client=c1 user=alice detail=5.0"},
		{NewDisconnected(t0, alice, packet.KeepAliveTimeout, "keep_alive_timeout"), "disconnected tenant=acme client=c1 user=alice reason=0x8d detail=keep_alive_timeout"},
		{NewAuthFailed(t0, Who{Tenant: "acme"}, packet.BadUserNameOrPassword, "tcp", "r"), "auth_failed tenant=acme reason=0x86"},
		{NewMessageDropped(t0, alice, "queue_full", 7), "message_dropped tenant=acme client=c1 user=alice detail=queue_full count=7"},
		{NewThrottled(t0, alice, "connect_rate"), "throttled tenant=acme client=c1 user=alice detail=connect_rate"},
		{NewInboxOverflow(t0, alice, 3), "inbox_overflow tenant=acme client=c1 user=alice count=3"},
		{NewSessionExpired(t0, alice), "session_expired tenant=acme client=c1 user=alice"},
		{NewWillPublished(t0, alice, "w/t"), "will_published tenant=acme client=c1 user=alice detail=w/t"},
		{NewSubscriptionRefused(t0, alice, "#", packet.NotAuthorized), "subscription_refused tenant=acme client=c1 user=alice reason=0x87 detail=#"},
		{NewPublishRefused(t0, alice, "a", packet.NotAuthorized), "publish_refused tenant=acme client=c1 user=alice reason=0x87 detail=a"},
		{NewTokenExpired(t0, alice), "token_expired tenant=acme client=c1 user=alice"},
		{NewReauthFailed(t0, alice, packet.NotAuthorized), "reauth_failed tenant=acme client=c1 user=alice reason=0x87"},
	}
	seen := map[Type]bool{}
	for _, tc := range tests {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		if !tc.e.Time.Equal(t0) {
			t.Errorf("%v: time %v", tc.e.Type, tc.e.Time)
		}
		seen[tc.e.Type] = true
	}
	for _, ty := range Types() {
		if !seen[ty] {
			t.Errorf("no constructor tested for %v", ty)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	e := NewSubscriptionRefused(t0, alice, "secret/#", packet.NotAuthorized)
	e.Count = 2
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"subscription_refused","time":"2026-01-02T03:04:05.0000006Z","tenant":"acme","clientid":"c1","user":"alice","reason":135,"reason_name":"Not authorized","detail":"secret/#","count":2}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(e, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if err := json.Unmarshal([]byte(`{"type":"nope","time":"x"}`), &back); err == nil {
		t.Error("unknown type accepted")
	}
	if s := Type(200).String(); s != "type_200" {
		t.Errorf("unknown type string %q", s)
	}
}

func TestLevels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		t    Type
		r    packet.ReasonCode
		want slog.Level
	}{
		{Connected, 0, slog.LevelInfo},
		{Disconnected, 0, slog.LevelInfo},
		{Disconnected, packet.KeepAliveTimeout, slog.LevelWarn},
		{AuthFailed, packet.BadUserNameOrPassword, slog.LevelWarn},
		{MessageDropped, 0, slog.LevelWarn},
		{SessionExpired, 0, slog.LevelInfo},
	} {
		if got := tc.t.Level(tc.r); got != tc.want {
			t.Errorf("%v/%v: %v, want %v", tc.t, tc.r, got, tc.want)
		}
	}
}

func TestLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	l := NewLog(slog.New(h), LogOptions{MaxPerSecond: 2, Levels: map[Type]slog.Level{SessionExpired: slog.LevelDebug}})
	l.Emit(NewDisconnected(t0, alice, packet.KeepAliveTimeout, "keep_alive_timeout"))
	l.Emit(NewSessionExpired(t0, alice))
	l.Emit(NewConnected(t0, alice, "tcp", "r", "5.0")) // over the limit
	l.Emit(NewConnected(t0, alice, "tcp", "r", "5.0")) // over the limit
	l.Emit(NewConnected(t0.Add(time.Second), alice, "tcp", "r", "3.1.1"))
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`time=2026-01-02T03:04:05.000Z level=WARN msg="event disconnected" tenant=acme client_id=c1 user=alice reason=0x8d reason_name="Keep Alive timeout" detail=keep_alive_timeout`,
		`time=2026-01-02T03:04:05.000Z level=DEBUG msg="event session_expired" tenant=acme client_id=c1 user=alice`,
		`time=2026-01-02T03:04:06.000Z level=WARN msg="events suppressed" count=2 max_per_second=2`,
		`time=2026-01-02T03:04:06.000Z level=INFO msg="event connected" tenant=acme client_id=c1 user=alice listener=tcp remote=r detail=3.1.1`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("log lines (-want +got):\n%s", d)
	}
	if l.Suppressed() != 2 {
		t.Errorf("suppressed %d, want 2", l.Suppressed())
	}
	// A disabled level costs nothing and is not counted.
	buf.Reset()
	quiet := NewLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), LogOptions{})
	quiet.Emit(NewConnected(t0, alice, "tcp", "r", "5.0"))
	if buf.Len() != 0 || quiet.Suppressed() != 0 {
		t.Errorf("disabled level wrote %q", buf.String())
	}
}

func TestCounter(t *testing.T) {
	t.Parallel()
	c := NewCounter(2)
	for _, tenant := range []string{"b", "a", "c", "d", "a"} {
		c.Emit(NewConnected(t0, Who{Tenant: tenant}, "", "", ""))
	}
	c.Emit(NewMessageDropped(t0, Who{Tenant: "a"}, "queue_full", 10))
	c.Emit(NewMessageDropped(t0, Who{Tenant: "z"}, "queue_full", 5))
	c.Emit(Event{Type: 99, Tenant: "a"}) // unknown: ignored
	want := []Sample{
		{Type: Connected, Tenant: "a", Events: 2, Items: 2},
		{Type: MessageDropped, Tenant: "a", Events: 1, Items: 10},
		{Type: Connected, Tenant: "b", Events: 1, Items: 1},
		{Type: Connected, Tenant: OtherTenant, Events: 2, Items: 2},
		{Type: MessageDropped, Tenant: OtherTenant, Events: 1, Items: 5},
	}
	if d := cmp.Diff(want, c.Snapshot()); d != "" {
		t.Errorf("snapshot (-want +got):\n%s", d)
	}
	if c.Total(Connected) != 5 || c.Total(MessageDropped) != 2 || c.Total(99) != 0 || c.Tenants() != 2 {
		t.Errorf("totals: %d %d tenants %d", c.Total(Connected), c.Total(MessageDropped), c.Tenants())
	}
}

func TestCounterConcurrent(t *testing.T) {
	t.Parallel()
	c := NewCounter(10)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				c.Emit(NewConnected(t0, Who{Tenant: fmt.Sprint("t", (g*1000+i)%50)}, "", "", ""))
			}
		}()
	}
	wg.Wait()
	var sum uint64
	for _, s := range c.Snapshot() {
		sum += s.Events
	}
	if sum != 4000 || c.Tenants() != 10 {
		t.Errorf("sum %d tenants %d", sum, c.Tenants())
	}
}

func TestRingAndFanout(t *testing.T) {
	t.Parallel()
	r := NewRing(3)
	c := NewCounter(0)
	var n int
	f := Fanout{r, c, nil, Discard{}, SinkFunc(func(Event) { n++ })}
	for i := range 5 {
		f.Emit(NewThrottled(t0, alice, fmt.Sprint(i)))
	}
	var got []string
	for _, e := range r.Events() {
		got = append(got, e.Detail)
	}
	if d := cmp.Diff([]string{"2", "3", "4"}, got); d != "" {
		t.Errorf("ring (-want +got):\n%s", d)
	}
	if r.Overwritten() != 2 || c.Total(Throttled) != 5 || n != 5 {
		t.Errorf("overwritten %d counted %d func %d", r.Overwritten(), c.Total(Throttled), n)
	}
	small := NewRing(0)
	small.Emit(NewSessionExpired(t0, alice))
	if len(small.Events()) != 1 {
		t.Error("a ring holds at least one event")
	}
}

func BenchmarkCounterEmit(b *testing.B) {
	c := NewCounter(100)
	e := NewMessageDropped(t0, alice, "queue_full", 1)
	b.ReportAllocs()
	for b.Loop() {
		c.Emit(e)
	}
}
