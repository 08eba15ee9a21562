package broker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
)

type timeout struct{}

func (timeout) Error() string { return "i/o timeout" }
func (timeout) Timeout() bool { return true }

// The disconnected event says why each connection ended (the hardening
// issue: every one said 0x00).
func TestDisconnectedEventReasons(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		end  func(h *harness, c *client)
		want string // reason and detail of the event
	}{
		{"client DISCONNECT", func(h *harness, c *client) { c.send(&packet.Disconnect{}) },
			"0x00 client_disconnect"},
		{"DISCONNECT with will", func(h *harness, c *client) {
			c.send(&packet.Disconnect{ReasonCode: packet.DisconnectWithWill})
		}, "0x04 client_disconnect"},
		{"protocol error", func(h *harness, c *client) {
			c.send(&packet.Connect{Version: packet.V5, ClientID: []byte("again")})
		}, "0x82 protocol_error"},
		{"malformed", func(h *harness, c *client) {
			c.c.Handle(packet.FixedHeader{Type: packet.PUBLISH, Flags: 6}, []byte{0, 1, 'a'})
		}, "0x81 malformed_packet"},
		{"packet too large", func(h *harness, c *client) {
			c.c.Fail(&packet.Error{Code: packet.PacketTooLarge, Packet: packet.PUBLISH})
		}, "0x95 malformed_packet"},
		{"keep-alive timeout", func(h *harness, c *client) { c.c.Lost(timeout{}) },
			"0x8d keep_alive_timeout"},
		{"socket error", func(h *harness, c *client) { c.c.Lost(errors.New("connection reset by peer")) },
			"0x80 connection_lost: connection reset by peer"},
		{"write failed", func(h *harness, c *client) { c.c.WriteFailed(timeout{}) },
			"0x80 write_failed: i/o timeout"},
		{"taken over", func(h *harness, c *client) {
			n := h.dial("new", packet.V5, "t")
			n.connect("dev", true, packet.Properties{})
		}, "0x8e session_taken_over"},
		{"administrative kick", func(h *harness, c *client) {
			if err := h.b.KickSession("t", "dev", false); err != nil {
				t.Fatal(err)
			}
		}, "0x98 administrative_action"},
		{"publish rate", func(h *harness, c *client) {
			c.send(pub("a", "1", 0, 0))
			c.send(pub("a", "2", 0, 0))
		}, "0x96 rate_limited"},
		{"closed without a word", func(h *harness, c *client) {}, "0x80 connection_lost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ring := event.NewRing(50)
			h := newHarnessWith(t, func(c *Config) {
				c.Events = ring
				c.Settings = tenantpkg.NewProvider()
				s := tenantpkg.Default()
				s.PublishRate = 1
				if err := c.Settings.Set("t", s); err != nil {
					t.Fatal(err)
				}
			})
			c := h.dial("c", packet.V5, "t")
			c.connect("dev", true, packet.Properties{})
			c.expect(connack5)
			tt.end(h, c)
			c.recv()
			c.c.Closed()
			var got []string
			for _, e := range ring.Events() {
				if e.Type == event.Disconnected {
					got = append(got, fmt.Sprintf("0x%02x %s", byte(e.Reason), e.Detail))
				}
			}
			if d := cmp.Diff([]string{tt.want}, got); d != "" {
				t.Errorf("disconnected events (-want +got):\n%s", d)
			}
		})
	}
}
