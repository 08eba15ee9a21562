package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// captured is a slog handler that keeps every record, for tests.
type captured struct {
	mu      sync.Mutex
	records []capturedRecord
}

type capturedRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *captured) WithGroup(string) slog.Handler            { return c }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	rec := capturedRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	c.records = append(c.records, rec)
	c.mu.Unlock()
	return nil
}

// matching returns the records whose message contains s.
func (c *captured) matching(s string) []capturedRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []capturedRecord
	for _, r := range c.records {
		if strings.Contains(r.Msg, s) {
			out = append(out, r)
		}
	}
	return out
}

// TestNotMQTTIsLoggedOnceAndClosed: HTTP (or other garbage) on the MQTT
// port closes the connection at once and logs one line with the remote
// address and what was seen; more garbage within the interval is counted,
// not logged (issue 13 item 17).
func TestNotMQTTIsLoggedOnceAndClosed(t *testing.T) {
	t.Parallel()
	logs := &captured{}
	cfg := testConfig(ListenerConfig{Name: "mqtt", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.Logger = slog.New(logs)
	cfg.ConnectTimeout = 20 * time.Second // a close must not wait for it
	s := start(t, cfg)
	addr := s.Addr("mqtt").String()

	garbage := func(payload string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		began := time.Now()
		if n, err := c.Read(make([]byte, 64)); err != io.EOF && !isReset(err) {
			t.Fatalf("after %q: read %d bytes, %v; want the connection closed", payload, n, err)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Fatalf("after %q the connection closed only after %v", payload, d)
		}
		return c.LocalAddr().String()
	}
	remote := garbage("GET / HTTP/1.1\r\nHost: broker\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for len(logs.matching("on MQTT port")) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the log with a deadline
	}
	got := logs.matching("on MQTT port")
	if len(got) != 1 {
		t.Fatalf("log lines about the HTTP request: %+v, want one", got)
	}
	r := got[0]
	if r.Msg != "HTTP request on MQTT port" || r.Level != slog.LevelWarn || r.Attrs["remote"] != remote || r.Attrs["listener"] != "mqtt" ||
		!strings.Contains(r.Attrs["first_bytes"], "GET / HTTP/1.1") {
		t.Errorf("log line %+v, want a warning naming the remote %s, the listener and the first bytes", r, remote)
	}
	garbage("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
	garbage("\xff\xff\xff\xff")
	if got := logs.matching("MQTT port"); len(got) != 1 {
		t.Errorf("garbage within the interval logged again: %+v", got)
	}
	if got := s.b.Stats().ProtocolError.Load(); got != 3 {
		t.Errorf("protocol errors counted = %d, want 3", got)
	}
	// A real client is not disturbed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ack := mqttConnect(t, c, packet.V5, "ok"); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestNotMQTTClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"GET / HTTP/1.1\r\n", "HTTP request on MQTT port"},
		{"POST /x HTTP/1.1", "HTTP request on MQTT port"},
		{"HEAD / HTTP/1.0", "HTTP request on MQTT port"},
		{"OPTIONS * HTTP/1.1", "HTTP request on MQTT port"},
		{"PRI * HTTP/2.0\r\n", "HTTP request on MQTT port"},
		{"\x16\x03\x01\x02\x00", "TLS handshake on a plain MQTT port"},
		{"PROXY TCP4 1.2.3.4", "PROXY protocol header on MQTT port"},
		{"SSH-2.0-OpenSSH", "SSH on MQTT port"},
		{"\x30\x05\x00\x01a", "first packet is not CONNECT on MQTT port"},
		{"\xff", "first packet is not CONNECT on MQTT port"},
	} {
		if got := notMQTT([]byte(tc.in)); got != tc.want {
			t.Errorf("notMQTT(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := firstBytes([]byte("GET / HTTP/1.1\r\nHost: x\r\n\x00\xff")), `GET / HTTP/1.1\r\nHost: x\r\n\x00\xff`; got != want {
		t.Errorf("firstBytes = %q, want %q", got, want)
	}
}

// TestRateLog: at most one line per interval; the next one reports what
// was suppressed meanwhile.
func TestRateLog(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	l := rateLog{every: 10 * time.Second}
	type step struct {
		At         time.Duration
		OK         bool
		Suppressed uint64
	}
	var got []step
	for _, at := range []time.Duration{0, time.Second, 5 * time.Second, 10 * time.Second, 11 * time.Second, 30 * time.Second} {
		ok, n := l.allow(t0.Add(at))
		got = append(got, step{at, ok, n})
	}
	want := []step{{0, true, 0}, {time.Second, false, 0}, {5 * time.Second, false, 0}, {10 * time.Second, true, 2},
		{11 * time.Second, false, 0}, {30 * time.Second, true, 1}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
