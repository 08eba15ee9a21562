package conformance

// Helpers for the wire-level tests (properties, flow control, packet size,
// malformed input, WebSocket): hand-built packet bytes, a close check that
// accepts a set of reason codes, access to the bytes the broker sent, and a
// WebSocket endpoint.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// ---- hand-built packets ---------------------------------------------------

// wireKit groups the byte builders so that their short names stay out of
// the package namespace shared with the other test areas: wire.str("a").
type wireKit struct{}

var wire wireKit

// pkt assembles a packet from its first byte and body fragments, computing
// the remaining length.
func (wireKit) pkt(first byte, body ...[]byte) []byte {
	b := slices.Concat(body...)
	return append(packet.AppendVarint([]byte{first}, uint32(len(b))), b...)
}

// str encodes a UTF-8 string or binary data field: two-byte length, bytes.
func (wireKit) str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func (wireKit) u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func (wireKit) u32(v uint32) []byte {
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// props encodes a property block: the property length then the properties.
func (wireKit) props(ps ...[]byte) []byte {
	b := slices.Concat(ps...)
	return append(packet.AppendVarint(nil, uint32(len(b))), b...)
}

// prop encodes one property: its identifier and its already-encoded value.
func (wireKit) prop(id packet.PropertyID, value ...[]byte) []byte {
	return append([]byte{byte(id)}, slices.Concat(value...)...)
}

// user encodes a User Property.
func (w wireKit) user(k, v string) []byte { return w.prop(packet.PropUser, w.str(k), w.str(v)) }

// publish builds a PUBLISH from its parts; propBlock is written as given
// (nil for 3.1.1).
func (w wireKit) publish(flags byte, topic string, id uint16, propBlock []byte, payload string) []byte {
	body := [][]byte{w.str(topic)}
	if flags>>1&3 != 0 {
		body = append(body, w.u16(id))
	}
	body = append(body, propBlock, []byte(payload))
	return w.pkt(0x30|flags, body...)
}

// connectWithProps returns the bytes of the 5.0 CONNECT r would send for o,
// with its property block replaced by propBlock (which may be invalid).
func (w wireKit) connectWithProps(t testing.TB, r *Raw, o ConnectOpts, propBlock []byte) []byte {
	t.Helper()
	c := r.ConnectPacket(o)
	c.Version, c.Properties = packet.V5, packet.Properties{}
	b := w.encode(t, c, packet.V5)
	i := 1
	for b[i]&0x80 != 0 { // skip the remaining length
		i++
	}
	body := b[i+1:]
	// Protocol name (6 bytes), level, flags and keep alive come first; the
	// empty property block is the single 0 byte after them.
	const at = 10
	if body[at] != 0 {
		t.Fatalf("unexpected CONNECT layout % x", body)
	}
	return w.pkt(byte(packet.CONNECT)<<4, body[:at], propBlock, body[at+1:])
}

// encode encodes p for v, failing the test if the codec refuses.
func (wireKit) encode(t testing.TB, p packet.Packet, v packet.Version) []byte {
	t.Helper()
	b, err := p.Append(nil, v)
	if err != nil {
		t.Fatalf("encode %s: %v", p.Type(), err)
	}
	return b
}

// wireConnect dials and connects a raw client of version v.
func wireConnect(t testing.TB, v packet.Version, o ConnectOpts) *Raw {
	t.Helper()
	r := DialRaw(t, v)
	r.Connect(o)
	return r
}

// ---- closing ---------------------------------------------------------------

// wireExpectDropped waits for the broker to close the connection after a
// malformed packet or a protocol error and checks what it sent first.
//
// In the CONNECT phase (beforeConnack) only a refusing CONNACK may come;
// afterwards, for 5.0 only a DISCONNECT, and for 3.1/3.1.1 nothing. A 5.0
// CONNACK or DISCONNECT must carry one of codes (any code >= 0x80 when codes
// is empty). It returns the reason code sent, or 0 when the broker closed silently.
func wireExpectDropped(t testing.TB, r *Raw, beforeConnack bool, codes ...packet.ReasonCode) packet.ReasonCode {
	t.Helper()
	allowed := packet.DISCONNECT
	if beforeConnack {
		allowed = packet.CONNACK
	}
	var last packet.Packet
	var rc packet.ReasonCode
	deadline := time.Now().Add(waitFor)
	for {
		ev, ok := r.next(time.Until(deadline))
		if !ok {
			if last != nil {
				t.Fatalf("broker did not close the connection within %v of %s", waitFor, Describe(last))
			}
			t.Fatalf("broker did not close the connection within %v", waitFor)
		}
		if ev.p == nil && ev.raw == nil {
			break
		}
		if ev.p == nil {
			t.Fatalf("before close: %v", ev.err)
		}
		if ev.p.Type() != allowed || r.V != packet.V5 {
			t.Fatalf("expected the connection to close, got %s", Describe(ev.p))
		}
		switch p := ev.p.(type) {
		case *packet.Disconnect:
			rc = p.ReasonCode
		case *packet.Connack:
			rc = p.ReasonCode
		}
		if !rc.IsError() || len(codes) > 0 && !slices.Contains(codes, rc) {
			t.Fatalf("got %s, want the connection closed (after reason code %v, if any)", Describe(ev.p), codes)
		}
		last = ev.p
	}
	if last != nil {
		t.Logf("closed after %s", Describe(last))
	} else {
		t.Logf("closed without a reason code")
	}
	return rc
}

// ---- the bytes the broker sent ----------------------------------------------

// wireNext returns the next packet with the exact bytes the broker sent, or
// ok false when nothing comes within d. A packet that Expect held back has
// lost its bytes; it is re-encoded.
func wireNext(t testing.TB, r *Raw, d time.Duration) (p packet.Packet, raw []byte, ok bool) {
	t.Helper()
	ev, ok := r.next(d)
	if !ok {
		return nil, nil, false
	}
	if ev.p == nil {
		t.Fatalf("waiting for a packet: %v", describeEnd(ev.err))
	}
	if ev.raw == nil {
		ev.raw = wire.encode(t, ev.p, r.V)
	}
	return ev.p, ev.raw, true
}

// wireNextOrEnd returns the next packet with the bytes the broker sent, or
// ok false once the connection has ended. It fails the test when neither
// happens within waitFor.
func wireNextOrEnd(t testing.TB, r *Raw) (p packet.Packet, raw []byte, ok bool) {
	t.Helper()
	ev, got := r.next(waitFor)
	if !got {
		t.Fatalf("neither a packet nor the close within %v", waitFor)
	}
	if ev.p == nil && ev.raw == nil {
		return nil, nil, false
	}
	if ev.p == nil {
		t.Fatalf("broker sent %v", ev.err)
	}
	if ev.raw == nil {
		ev.raw = wire.encode(t, ev.p, r.V)
	}
	return ev.p, ev.raw, true
}

// ---- WebSocket endpoint ------------------------------------------------------

var flagBrokerWS = flag.String("broker-ws", "", "ws://HOST:PORT/PATH of the broker's WebSocket listener (also $SKYBRIDGE_BROKER_WS; default: a second mosquitto when testing mosquitto)")

// wsEndpoint is a broker's WebSocket listener and a TCP listener of the
// same broker.
type wsEndpoint struct {
	URL string
	// DialTCP connects to a TCP listener of the same broker.
	DialTCP func() (net.Conn, error)
}

// wsMosquittoConfig gives the second mosquitto a TCP and a WebSocket listener.
const wsMosquittoConfig = `# generated by the Skybridge conformance suite (WebSocket tests)
listener %d 127.0.0.1
listener %d 127.0.0.1
protocol websockets
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
`

// wsBroker returns the WebSocket endpoint to test, starting a
// separate mosquitto (stopped when t ends) when the broker under test is the
// suite's own mosquitto and no -broker-ws is given. It skips t when there is
// no WebSocket endpoint.
func wsBroker(t *testing.T) wsEndpoint {
	t.Helper()
	if u := envOr(*flagBrokerWS, "SKYBRIDGE_BROKER_WS"); u != "" {
		if _, err := url.Parse(u); err != nil {
			t.Fatalf("-broker-ws %q: %v", u, err)
		}
		return wsEndpoint{URL: u, DialTCP: target.Dial}
	}
	if target.WebSocketURL != "" {
		return wsEndpoint{URL: target.WebSocketURL, DialTCP: target.Dial}
	}
	if target.Name != "mosquitto" {
		t.Skipf("no WebSocket endpoint for %s: pass -broker-ws ws://host:port/mqtt", target.Name)
	}
	ep, stop, err := wsStartMosquitto()
	if err != nil {
		t.Skipf("cannot start a mosquitto with a WebSocket listener: %v", err)
	}
	t.Cleanup(stop)
	return ep
}

func wsStartMosquitto() (wsEndpoint, func(), error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, e := os.Stat(bin); e != nil {
			return wsEndpoint{}, nil, errors.New("mosquitto not found")
		}
	}
	dir, err := os.MkdirTemp("", "skybridge-conformance-ws-")
	if err != nil {
		return wsEndpoint{}, nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		tcpPort, err1 := freePort()
		wsPort, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			os.RemoveAll(dir)
			return wsEndpoint{}, nil, err
		}
		if tcpPort == wsPort {
			continue
		}
		conf := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(wsMosquittoConfig, tcpPort, wsPort)), 0o600); err != nil {
			os.RemoveAll(dir)
			return wsEndpoint{}, nil, err
		}
		var stderr strings.Builder
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return wsEndpoint{}, nil, err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		tcpAddr := fmt.Sprintf("127.0.0.1:%d", tcpPort)
		ep := wsEndpoint{URL: fmt.Sprintf("ws://127.0.0.1:%d/mqtt", wsPort),
			DialTCP: func() (net.Conn, error) { return net.DialTimeout("tcp", tcpAddr, waitFor) }}
		ready := make(chan error, 1)
		go func() {
			ready <- errors.Join(waitListening(tcpAddr, 5*time.Second),
				waitListening(fmt.Sprintf("127.0.0.1:%d", wsPort), 5*time.Second))
		}()
		select {
		case err := <-ready:
			if err == nil {
				var once sync.Once
				stop := func() {
					once.Do(func() {
						_ = cmd.Process.Kill() // by its own process id
						<-exited
						os.RemoveAll(dir)
					})
				}
				return ep, stop, nil
			}
			_ = cmd.Process.Kill()
			<-exited
			lastErr = err
		case err := <-exited:
			lastErr = fmt.Errorf("mosquitto exited: %v: %s", err, stderr.String())
		}
	}
	os.RemoveAll(dir)
	return wsEndpoint{}, nil, lastErr
}

// wsDial opens a WebSocket to ep offering subprotocols; the connection is
// closed when t ends.
func wsDial(t testing.TB, ep wsEndpoint, subprotocols ...string) *websocket.Conn {
	t.Helper()
	checkDeviation(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ep.URL, &websocket.DialOptions{Subprotocols: subprotocols, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		t.Fatalf("WebSocket handshake with %s offering %q: %v", ep.URL, subprotocols, err)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// wsDialRaw connects a raw client over a WebSocket: each SendBytes is one
// binary message, and the broker's binary messages are read as a byte
// stream. A non-binary message from the broker ends the connection with an
// error.
func wsDialRaw(t testing.TB, ep wsEndpoint, v packet.Version) (*Raw, *websocket.Conn) {
	t.Helper()
	checkDeviation(t)
	c := wsDial(t, ep, "mqtt")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &Raw{t: t, conn: websocket.NetConn(ctx, c, websocket.MessageBinary), V: v, events: make(chan event, 4096)}
	go r.readLoop()
	t.Cleanup(r.Close)
	return r, c
}

// wsDialRawTCP opens a raw client to the TCP listener of ep's broker.
func wsDialRawTCP(t testing.TB, ep wsEndpoint, v packet.Version) *Raw {
	t.Helper()
	checkDeviation(t)
	c, err := ep.DialTCP()
	if err != nil {
		t.Fatalf("dial the TCP listener of the WebSocket broker: %v", err)
	}
	r := &Raw{t: t, conn: c, V: v, events: make(chan event, 4096)}
	go r.readLoop()
	t.Cleanup(r.Close)
	return r
}
