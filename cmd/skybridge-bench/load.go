package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// ClientOptions are the settings shared by every connection of a run.
type ClientOptions struct {
	Addr string
	// SubAddr, when set, is where subscribers connect instead of Addr:
	// another node of a cluster, so that every message crosses nodes.
	SubAddr   string
	SrcIPs    int // spread connections over 127.0.0.1 .. 127.0.0.SrcIPs (loopback targets only)
	Version   packet.Version
	Clean     bool
	Expiry    uint32 // 5.0 session expiry for persistent sessions
	KeepAlive uint16
	Inflight  int           // QoS 1/2 window of each publisher (and 5.0 receive maximum of subscribers)
	Timeout   time.Duration // connect/CONNACK/SUBACK deadline, and the longest silence tolerated mid-run
	// ConnectRate caps new connections per second (0: as fast as
	// Concurrency dialers go).
	ConnectRate float64
	Concurrency int
	IDPrefix    string // client identifiers are IDPrefix-role-index
	// SendBuf is SO_SNDBUF of publisher connections (0: kernel autotuning).
	SendBuf int
	// ReadBuf is the read buffer of each connection (0: 4 KiB).
	ReadBuf int
}

func (o *ClientOptions) defaults() {
	if o.Version == 0 {
		o.Version = packet.V311
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 300
	}
	if o.Inflight <= 0 {
		o.Inflight = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.SrcIPs < 0 {
		o.SrcIPs = 0
	}
	if o.IDPrefix == "" {
		o.IDPrefix = "sbb" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	if !o.Clean && o.Version == packet.V5 && o.Expiry == 0 {
		o.Expiry = 3600
	}
}

// localIP returns the source address for connection i: 127.0.0.(1+i%SrcIPs)
// when the broker is on loopback, so that more connections than one source
// address has ephemeral ports can be opened; nil otherwise.
func (o *ClientOptions) localIP(i int) net.IP {
	if o.SrcIPs <= 1 {
		return nil
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	n := i % o.SrcIPs
	return net.IPv4(127, 0, byte(n/250), byte(1+n%250))
}

func (o *ClientOptions) dialConfig(role string, i int, clean bool) dialConfig {
	return dialConfig{
		Addr: o.Addr, LocalIP: o.localIP(i), Version: o.Version, Clean: clean, Expiry: o.Expiry,
		KeepAlive: o.KeepAlive, ClientID: o.IDPrefix + "-" + role + "-" + strconv.Itoa(i),
		Inflight: uint16(min(o.Inflight, 65535)), Timeout: o.Timeout, SendBuf: o.SendBuf,
		ReadBuf: o.ReadBuf,
	}
}

// expand replaces %i in a topic pattern with the client index.
func expand(pattern string, i int) string {
	return strings.ReplaceAll(pattern, "%i", strconv.Itoa(i))
}

// connectMany opens n connections named role-0..role-n-1 with the options'
// rate and concurrency; after each successful CONNACK, setup (may be nil)
// runs on the connection (SUBSCRIBE). It gives up at the first error when
// failFast, else after more than max(10, n/100) failures. Failed slots are
// nil. Connect latencies (TCP connect to CONNACK) go to rec's histograms.
func connectMany(ctx context.Context, o *ClientOptions, rec *Recorder, role string, n int, clean, failFast bool,
	setup func(i int, c *mqttConn) error) ([]*mqttConn, error) {
	conns := make([]*mqttConn, n)
	if n == 0 {
		return conns, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idx := make(chan int, 256)
	go func() {
		defer close(idx)
		start := time.Now()
		for i := 0; i < n; i++ {
			if o.ConnectRate > 0 {
				due := start.Add(time.Duration(float64(i) / o.ConnectRate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case idx <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var failed atomic.Int64
	limit := int64(max(10, n/100))
	var wg sync.WaitGroup
	for w := 0; w < min(o.Concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]int64, 0, 1)
			for i := range idx {
				if ctx.Err() != nil {
					continue
				}
				t0 := time.Now()
				c, err := dial(o.dialConfig(role, i, clean))
				if err == nil && setup != nil {
					if err = setup(i, c); err != nil {
						c.nc.Close()
					}
				}
				if err != nil {
					rec.Error("connect", err)
					if failFast || failed.Add(1) > limit {
						cancel(fmt.Errorf("%s %d of %d: %w", role, i, n, err))
					}
					continue
				}
				lat = append(lat[:0], int64(time.Since(t0)))
				rec.Record(i, lat)
				rec.Connects.Add(1)
				rec.Conns.Add(1)
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		closeAll(conns, rec)
		return nil, err
	}
	return conns, nil
}

// closeAll disconnects every open connection, in parallel.
func closeAll(conns []*mqttConn, rec *Recorder) {
	var wg sync.WaitGroup
	ch := make(chan *mqttConn)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				c.disconnect()
				rec.Conns.Add(-1)
			}
		}()
	}
	for _, c := range conns {
		if c != nil {
			ch <- c
		}
	}
	close(ch)
	wg.Wait()
}

// subscriber reads one connection until it closes: it records the latency
// carried in each PUBLISH, acknowledges QoS 1 and 2 in batches, and stops
// with an error after Timeout of silence unless the run is over.
type subscriber struct {
	c        *mqttConn
	idx      int
	rec      *Recorder
	timeout  time.Duration
	stopping *atomic.Bool
	received atomic.Int64
}

func (s *subscriber) run() {
	var (
		pub   packet.Publish
		ack   = packet.Ack{}
		out   []byte
		lat   = make([]int64, 0, 512)
		now   int64
		batch int64
	)
	flush := func() error {
		if batch > 0 {
			s.rec.Received.Add(batch)
			s.received.Add(batch)
			batch = 0
		}
		s.rec.Record(s.idx, lat)
		lat = lat[:0]
		if len(out) > 0 {
			err := s.c.write(out, s.timeout)
			out = out[:0]
			return err
		}
		return nil
	}
	for {
		fresh := s.c.r.Buffered() == 0
		if fresh {
			if err := flush(); err != nil {
				s.fail("subscriber write", err)
				return
			}
			_ = s.c.nc.SetReadDeadline(time.Now().Add(s.timeout))
		}
		h, body, err := s.c.r.ReadPacket()
		if err != nil {
			_ = flush()
			s.fail("subscriber read", err)
			return
		}
		if fresh || now == 0 {
			// Everything in one buffer fill arrived at the same read.
			now = time.Now().UnixNano()
		}
		switch h.Type {
		case packet.PUBLISH:
			if err := pub.Decode(h, body, s.c.v); err != nil {
				s.fail("subscriber decode", err)
				return
			}
			if len(pub.Payload) >= 8 {
				if ts := int64(binary.BigEndian.Uint64(pub.Payload)); ts > 0 {
					lat = append(lat, now-ts)
				}
			}
			batch++
			switch pub.QoS {
			case packet.QoS1:
				ack = packet.Ack{PacketType: packet.PUBACK, PacketID: pub.PacketID}
				out, _ = ack.Append(out, s.c.v)
			case packet.QoS2:
				ack = packet.Ack{PacketType: packet.PUBREC, PacketID: pub.PacketID}
				out, _ = ack.Append(out, s.c.v)
			}
			if len(lat) == cap(lat) {
				_ = flush()
			}
		case packet.PUBREL:
			if err := ack.Decode(h, body, s.c.v); err != nil {
				s.fail("subscriber decode", err)
				return
			}
			ack = packet.Ack{PacketType: packet.PUBCOMP, PacketID: ack.PacketID}
			out, _ = ack.Append(out, s.c.v)
		case packet.DISCONNECT:
			s.fail("subscriber", disconnectErr(h, body, s.c.v))
			return
		}
	}
}

func (s *subscriber) fail(kind string, err error) {
	if s.stopping.Load() {
		return
	}
	s.rec.Error(kind, describe(err))
	s.c.nc.Close()
}

func disconnectErr(h packet.FixedHeader, body []byte, v packet.Version) error {
	var d packet.Disconnect
	if d.Decode(h, body, v) == nil && v == packet.V5 {
		return fmt.Errorf("broker sent DISCONNECT 0x%02x (%s)", byte(d.ReasonCode), d.ReasonCode)
	}
	return errors.New("broker sent DISCONNECT")
}

// describe turns low-level network errors into what a user can act on.
func describe(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("broker closed the connection")
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("broker reset the connection")
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("no data from the broker before the deadline (%v)", err)
	}
	return err
}

// publisher writes PUBLISH packets on one connection: flat out (Rate 0) or
// paced, QoS 0 in batches, QoS 1/2 within a window of packet identifiers
// that its reader returns as acknowledgements arrive.
type publisher struct {
	c       *mqttConn
	idx     int
	rec     *Recorder
	qos     packet.QoS
	retain  bool
	topic   []byte
	topics  [][]byte      // when set, message k goes to topics[k%len(topics)]
	payload []byte        // first 8 bytes: send time (UnixNano); nil: empty messages
	rate    float64       // messages per second for this publisher; 0: saturate
	limit   int64         // messages to send; 0: until stop
	timeout time.Duration // wait for a window slot (acknowledgements)
	// writeTimeout bounds one write. Under saturation a broker may stop
	// reading a publisher for a long time (TCP backpressure is its flow
	// control), so runs set it to cover the whole run; a broker that
	// vanishes still fails the write at once (reset) or the reader (EOF).
	writeTimeout time.Duration
	stopping     *atomic.Bool
	window       int

	ids   chan uint16 // free packet identifiers (QoS 1/2)
	sent  atomic.Int64
	acked atomic.Int64
	done  chan struct{} // closed when the reader ends
}

func newFlag() *atomic.Bool { return new(atomic.Bool) }

func newPublisher(c *mqttConn, idx int, rec *Recorder, qos packet.QoS, topic string, size, window int,
	rate float64, limit int64, timeout time.Duration, stopping *atomic.Bool) *publisher {
	if c.serverInflight > 0 {
		window = min(window, int(c.serverInflight))
	}
	window = min(max(window, 1), 65535)
	p := &publisher{c: c, idx: idx, rec: rec, qos: qos, topic: []byte(topic), payload: make([]byte, max(size, 8)),
		rate: rate, limit: limit, timeout: timeout, writeTimeout: timeout, stopping: stopping, window: window,
		done: make(chan struct{})}
	for i := 8; i < len(p.payload); i++ {
		p.payload[i] = byte('a' + i%26)
	}
	if qos > 0 {
		p.ids = make(chan uint16, window)
		for id := 1; id <= window; id++ {
			p.ids <- uint16(id)
		}
	}
	return p
}

// maxBatch bounds the PUBLISH packets packed into one write.
func (p *publisher) maxBatch() int {
	topic := len(p.topic)
	for _, t := range p.topics {
		topic = max(topic, len(t))
	}
	return max(1, min(128, (32<<10)/(len(p.payload)+topic+8)))
}

// run publishes until stop is closed or limit messages are sent.
func (p *publisher) run(stop <-chan struct{}) {
	pk := packet.Publish{QoS: p.qos, Retain: p.retain, Topic: p.topic, Payload: p.payload}
	buf := make([]byte, 0, 64<<10)
	batch := p.maxBatch()
	start := time.Now()
	var sent int64
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration) bool {
		timer.Reset(d)
		select {
		case <-stop:
			return false
		case <-timer.C:
			return true
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := batch
		if p.limit > 0 {
			if sent >= p.limit {
				return
			}
			n = int(min(int64(n), p.limit-sent))
		}
		if p.rate > 0 {
			due := int64(time.Since(start).Seconds()*p.rate) + 1 - sent
			if due <= 0 {
				next := start.Add(time.Duration(float64(sent) / p.rate * float64(time.Second)))
				if !wait(max(time.Until(next), 50*time.Microsecond)) {
					return
				}
				continue
			}
			n = int(min(int64(n), due))
		}
		buf = buf[:0]
		p.stamp()
		k := 0
		for ; k < n; k++ {
			if p.qos > 0 {
				var id uint16
				if k == 0 {
					timer.Reset(p.timeout)
					select {
					case id = <-p.ids:
					case <-stop:
						return
					case <-p.done:
						return
					case <-timer.C:
						p.fail("publisher", fmt.Errorf("no acknowledgement from the broker for %v (%d in flight)", p.timeout, p.window))
						return
					}
					// The window may have been closed for a while: stamp now.
					p.stamp()
				} else {
					select {
					case id = <-p.ids:
					default:
					}
					if id == 0 {
						break
					}
				}
				pk.PacketID = id
			}
			if p.topics != nil {
				pk.Topic = p.topics[(sent+int64(k))%int64(len(p.topics))]
			}
			buf, _ = pk.Append(buf, p.c.v)
		}
		if err := p.c.write(buf, p.writeTimeout); err != nil {
			p.fail("publisher write", err)
			return
		}
		sent += int64(k)
		p.sent.Add(int64(k))
		p.rec.Sent.Add(int64(k))
	}
}

// stamp writes the current time into the payload.
func (p *publisher) stamp() {
	if len(p.payload) >= 8 {
		binary.BigEndian.PutUint64(p.payload, uint64(time.Now().UnixNano()))
	}
}

// read handles what the broker sends a publisher: PUBACK, PUBREC (answered
// with PUBREL), PUBCOMP.
func (p *publisher) read() {
	defer close(p.done)
	var ack packet.Ack
	var out []byte
	var acked int64
	for {
		if p.c.r.Buffered() == 0 {
			if acked > 0 {
				p.acked.Add(acked)
				p.rec.Acked.Add(acked)
				acked = 0
			}
			if len(out) > 0 {
				if err := p.c.write(out, p.timeout); err != nil {
					p.fail("publisher write", err)
					return
				}
				out = out[:0]
			}
		}
		h, body, err := p.c.r.ReadPacket()
		if err != nil {
			p.fail("publisher read", err)
			return
		}
		switch h.Type {
		case packet.PUBACK, packet.PUBREC, packet.PUBCOMP:
			if err := ack.Decode(h, body, p.c.v); err != nil {
				p.fail("publisher decode", err)
				return
			}
			if ack.ReasonCode >= 0x80 {
				p.rec.Error("publish refused", fmt.Errorf("%s 0x%02x (%s)", h.Type, byte(ack.ReasonCode), ack.ReasonCode))
			}
			if h.Type == packet.PUBREC && ack.ReasonCode < 0x80 {
				ack = packet.Ack{PacketType: packet.PUBREL, PacketID: ack.PacketID}
				out, _ = ack.Append(out, p.c.v)
				continue
			}
			acked++
			select {
			case p.ids <- ack.PacketID:
			default:
				p.fail("publisher", fmt.Errorf("unexpected %s for packet id %d", h.Type, ack.PacketID))
				return
			}
		case packet.DISCONNECT:
			p.fail("publisher", disconnectErr(h, body, p.c.v))
			return
		}
	}
}

func (p *publisher) fail(kind string, err error) {
	if p.stopping.Load() {
		return
	}
	p.rec.Error(kind, describe(err))
	p.c.nc.Close()
}

// inflight returns the messages sent and not yet acknowledged.
func (p *publisher) inflight() int {
	if p.qos == 0 {
		return 0
	}
	return p.window - len(p.ids)
}
