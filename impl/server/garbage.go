package server

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Something that is not MQTT on an MQTT port (a browser, a health check
// speaking HTTP, a TLS client on a plain port, a scanner) is known from the
// first byte: every MQTT connection starts with CONNECT [MQTT-3.1.0-1],
// packet type 1 in the first byte's high nibble. (A CONNECT with reserved
// flags set is left to the broker, which may answer a 5.0 client with
// CONNACK 0x81, except 0x16: that is a TLS handshake record, which no
// client means as MQTT.) Such a connection is closed at once, without waiting for the rest of what it claims to send or for the
// CONNECT timeout, counted as a protocol error, and reported in the log
// with the remote address and what it looked like — at most once per
// notMQTTEvery per listener, so that a scanner cannot flood the log; the
// next line says how many were not logged.

// notMQTTEvery is the least time between two such log lines of a listener.
const notMQTTEvery = 10 * time.Second

// tlsHandshake is the first byte of a TLS record carrying a handshake.
const tlsHandshake = 0x16

// firstByteOK reports whether b0 may start an MQTT connection.
func firstByteOK(b0 byte) bool {
	return b0>>4 == byte(packet.CONNECT) && b0 != tlsHandshake
}

// listenerLog is a listener's bound on these lines.
type listenerLog struct {
	name string
	rateLog
}

// rateLog lets one line through per interval and counts the rest.
type rateLog struct {
	every time.Duration

	mu         sync.Mutex
	next       time.Time // no line before
	suppressed uint64
}

// allow reports whether a line may be written at now and, if so, how many
// were suppressed since the last one.
func (l *rateLog) allow(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.every), 0
	return true, n
}

var httpMethods = []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PRI * HTTP/2"}

// notMQTT says what a connection whose first bytes are b looks like.
func notMQTT(b []byte) string {
	for _, m := range httpMethods {
		if bytes.HasPrefix(b, []byte(m)) {
			return "HTTP request on MQTT port"
		}
	}
	switch {
	case len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03:
		return "TLS handshake on a plain MQTT port"
	case bytes.HasPrefix(b, []byte("PROXY ")):
		return "PROXY protocol header on MQTT port"
	case bytes.HasPrefix(b, []byte("SSH-")):
		return "SSH on MQTT port"
	}
	return "first packet is not CONNECT on MQTT port"
}

// firstBytes quotes up to 32 bytes for the log, printable ASCII as is.
func firstBytes(b []byte) string {
	b = b[:min(len(b), 32)]
	q := strconv.QuoteToASCII(string(b))
	return q[1 : len(q)-1]
}

// refuseNotMQTT ends a connection whose first byte is not CONNECT's.
func (s *Server) refuseNotMQTT(cn *connection, seen []byte) {
	cn.c.Fail(&packet.Error{Code: packet.MalformedPacket, Reason: "first packet is not CONNECT", Statement: "MQTT-3.1.0-1"})
	l := cn.lis
	if l == nil {
		return
	}
	ok, suppressed := l.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"listener", l.name, "remote", cn.c.Remote(), "first_bytes", firstBytes(seen)}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.log.Warn(notMQTT(seen), args...)
}
