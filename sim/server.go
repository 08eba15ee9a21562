package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/retain"
)

// BrokerSpec configures a simulated broker process.
type BrokerSpec struct {
	Config broker.Config
	// ConnectTimeout bounds the wait for CONNECT; WriteTimeout bounds a
	// blocked write (a client that reads nothing), as in impl/server.
	ConnectTimeout, WriteTimeout time.Duration
	Port                         int
	// Durable runs the broker on its Pebble store (impl/store) on a
	// crashable in-memory disk of its host: a crash is a power loss that
	// keeps what was synced. Without it the broker keeps everything in
	// memory and a crash loses it all.
	Durable bool
	// FsyncMin and FsyncMax bound the simulated latency of one group
	// commit (a synced write), drawn from the seed for each.
	FsyncMin, FsyncMax time.Duration
	// Tenants with settings and authorization rules of their own
	// (tenants.go); the others get the defaults and no rules.
	Tenants []TenantSpec
}

// DefaultBrokerSpec is the broker the scenarios run: production defaults
// with small queues, so that the bounds are reached.
func DefaultBrokerSpec() BrokerSpec {
	cfg := broker.DefaultConfig()
	cfg.Session.MaxQueued = 200
	cfg.Session.MaxInflight = 32
	cfg.Session.MaxOutput = 64 << 10
	cfg.MaxPacketSize = 64 << 10
	cfg.Session.MaxPacketSize = 64 << 10
	// The simulated clients pick their tenant with a "tenant/user" name.
	cfg.Authenticator = broker.TenantFromUsername{}
	return BrokerSpec{Config: cfg, ConnectTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, Port: 1883,
		Durable: true, FsyncMin: 500 * time.Microsecond, FsyncMax: 5 * time.Millisecond}
}

// RuntimeStats counts what the simulated runtime did.
type RuntimeStats struct {
	Accepted, Timeouts, ConnectTimeouts, WriteTimeouts, Crashes, Restarts uint64
	// MaxBatch is the largest single Output batch seen.
	MaxBatch int
	// Durable broker: group commits, the batches they wrote, batches whose
	// commit failed, and the unsynced-data percentage of the last power loss.
	Commits, Batches, StoreErrors uint64
	LastUnsynced                  int
	// PowerLosses counts crashes of the durable broker, Unsynced those
	// whose crash clone kept some unsynced data; Compactions the restarts
	// that compacted the disk (durable.go compactDisk).
	PowerLosses, Unsynced, Compactions uint64
}

// BrokerProc is a broker process on a host: the real broker core
// (impl/broker) driven by a runtime that does what impl/server does, on the
// virtual network and clock. Crash kills the process and resets every
// connection (a durable broker's host loses power: its disk keeps what was
// synced); Restart starts a fresh broker, which recovers from the disk.
type BrokerProc struct {
	w     *World
	Host  *Host
	Spec  BrokerSpec
	B     *broker.Broker
	clock *Clock
	conns []*srvConn
	up    bool
	// Incarnation counts starts: 1 for the first broker, +1 per restart.
	Incarnation int
	Stats       RuntimeStats
	// Store wraps the retained store of each new broker (planted bugs).
	Store func(retain.Store) retain.Store

	// The durable broker's disk, the store on it, and the shadow of what
	// the disk holds (durable.go).
	disk   *vfs.MemFS
	ds     *durableStore
	shadow *shadow
	// Drop bookkeeping (oracle): the broker's queue-full drop total and
	// PUBLISH count when last looked at.
	droppedQF, messagesIn uint64
}

type srvConn struct {
	p  *BrokerProc
	ep *Endpoint
	c  *broker.Conn

	in  []byte
	src bytes.Reader
	rd  *packet.Reader

	readerDone, finished bool
	flushPending         bool
	blocked              bool
	spare                []byte

	deadline   time.Time // read deadline; zero: none
	deadlineEv *Event
	connected  bool // CONNECT accepted
	gotFirst   bool
	writeEv    *Event
	idleEv     *Event // the pending end of the reader's batch (endBatch)
	dead       bool   // its process crashed
	connect    packet.Connect
	rewrite    rewriteState
	// flow is the broker's outbound flow as its writer and reader see it
	// (flow-control).
	flow flowState
}

// flowState tracks the QoS 1/2 PUBLISHes the broker sent on a connection
// and has not had completed (PUBACK, PUBCOMP, or a PUBREC with an error):
// at most the client's Receive Maximum of them [MQTT-3.3.4-9], each with
// its own non-zero packet identifier [MQTT-2.2.1-3].
type flowState struct {
	recvMax  int
	inflight map[uint16]bool
}

// sent checks the PUBLISHes of one output batch.
func (sc *srvConn) sent(out []byte) {
	o := sc.p.w.Oracle
	if o == nil || !sc.connected {
		return
	}
	f := &sc.flow
	for off := 0; off < len(out); {
		h, hdr, total, st := nextFrame(out[off:], 0)
		if st != frameWhole {
			return
		}
		body := out[off+hdr : off+total]
		off += total
		if h.Type != packet.PUBLISH || (h.Flags>>1)&3 == 0 {
			continue
		}
		pid := publishPID(body)
		o.Checked[InvFlowControl]++
		switch {
		case pid == 0:
			o.fail(InvProtocol, fmt.Sprintf("conn %d: a QoS %d PUBLISH with packet identifier 0", sc.ep.Conn.ID, (h.Flags>>1)&3))
		case f.inflight[pid]:
			o.fail(InvFlowControl, fmt.Sprintf("conn %d: a PUBLISH reuses packet identifier %d, still in flight", sc.ep.Conn.ID, pid))
		case len(f.inflight) >= f.recvMax:
			o.fail(InvFlowControl, fmt.Sprintf("conn %d: a QoS %d PUBLISH beyond the client's Receive Maximum %d (%d in flight)",
				sc.ep.Conn.ID, (h.Flags>>1)&3, f.recvMax, len(f.inflight)))
		}
		if f.inflight == nil {
			f.inflight = map[uint16]bool{}
		}
		f.inflight[pid] = true
	}
}

// received notes an acknowledgement the broker is handed.
func (sc *srvConn) received(h packet.FixedHeader, body []byte) {
	if len(body) < 2 {
		return
	}
	pid := uint16(body[0])<<8 | uint16(body[1])
	switch {
	case h.Type == packet.PUBACK, h.Type == packet.PUBCOMP,
		h.Type == packet.PUBREC && len(body) > 2 && body[2] >= 0x80:
		delete(sc.flow.inflight, pid)
	}
}

func newBrokerProc(w *World, h *Host, spec BrokerSpec) *BrokerProc {
	return &BrokerProc{w: w, Host: h, Spec: spec}
}

// Start starts a fresh broker and listens. A durable broker first opens
// its store and recovers what the disk holds.
func (p *BrokerProc) Start() {
	s := p.w.Sim
	o := p.w.Oracle
	p.clock = s.NewClock(p.Host.ID)
	e := env.Env{Clock: p.clock, Rand: env.NewRand(s.Rand.Uint64())}
	cfg := p.Spec.Config
	if p.Store != nil {
		cfg.Retained = p.Store(retain.NewMemory())
	}
	if p.w.bugs&BugAckBeforeDurable != 0 {
		cfg.Hooks = &broker.Hooks{AckBeforeDurable: true}
	}
	if err := p.Spec.configure(&cfg); err != nil {
		panic("sim: tenant settings: " + err.Error()) // a scenario's mistake, not a finding
	}
	p.droppedQF, p.messagesIn = 0, 0
	if !p.Spec.Durable {
		p.B = broker.New(cfg, e, nil) // in-memory: a crash loses everything
	} else {
		ds, err := p.openStore()
		if err != nil {
			if o != nil {
				o.fail(InvDurable, "the store does not open after a power loss: "+err.Error())
			}
			return
		}
		p.ds = ds
		p.B = broker.New(cfg, e, ds)
		if o != nil && p.Incarnation > 0 {
			o.brokerRecovering()
		}
		if err := p.B.Recover(); err != nil {
			if o != nil {
				o.fail(InvDurable, "the broker does not recover after a power loss: "+err.Error())
			}
			return
		}
		if o != nil && p.Incarnation > 0 {
			o.brokerRecovered()
		}
	}
	p.up = true
	p.Incarnation++
	p.Host.Listen(p.Spec.Port, p.accept)
}

// Up reports whether the process runs.
func (p *BrokerProc) Up() bool { return p.up }

// Crash kills the process: its timers die, its connections are reset, its
// in-memory state is gone.
func (p *BrokerProc) Crash() {
	if !p.up {
		return
	}
	p.up = false
	p.Stats.Crashes++
	p.clock.Kill()
	// The process dies, not the host: its sockets are reset by the
	// kernel (peers hear a reset) and its port stops accepting.
	for _, sc := range p.conns {
		sc.dead = true
		p.w.Sim.Cancel(sc.deadlineEv)
		p.w.Sim.Cancel(sc.writeEv)
		sc.ep.Abort()
	}
	p.conns = nil
	p.Host.Unlisten(p.Spec.Port)
	if o := p.w.Oracle; o != nil && p.B != nil {
		o.beforeRoute() // the dying broker's drop counters, last read
	}
	if p.ds != nil {
		p.powerLoss()
	}
	p.B = nil
	p.w.Sim.Note(KindCrash, p.Host.ID, 0, "broker")
	if p.w.Oracle != nil {
		p.w.Oracle.brokerCrash()
	}
}

// Restart starts a fresh broker on the host after a crash.
func (p *BrokerProc) Restart() {
	if p.up {
		return
	}
	p.Stats.Restarts++
	p.Start()
	p.w.Sim.Note(KindRestart, p.Host.ID, 0, "broker")
}

func (p *BrokerProc) accept(ep *Endpoint) Handler {
	p.Stats.Accepted++
	sc := &srvConn{p: p, ep: ep}
	sc.rd = packet.NewReader(&sc.src, 4096)
	sc.rd.MaxPacketSize = p.Spec.Config.MaxPacketSize
	sc.c = p.B.NewConn(broker.ConnInfo{Listener: "sim", DefaultTenant: "default",
		Remote:        ep.peer().Host.Name + ":" + strconv.FormatUint(ep.Conn.ID, 10),
		IdleEndsBatch: true}, sc.wake) // the reader calls Idle after each batch
	p.conns = append(p.conns, sc)
	sc.setDeadline(p.w.Sim.now.Add(p.Spec.ConnectTimeout))
	return sc
}

// wake is the broker's wake function: it only schedules a flush.
func (sc *srvConn) wake() {
	if sc.flushPending || sc.finished || sc.dead {
		return
	}
	sc.flushPending = true
	sc.p.w.Sim.After(0, func() {
		sc.flushPending = false
		sc.flush()
	})
}

// Opened implements Handler (accepted endpoints are open already).
func (sc *srvConn) Opened(*Endpoint) {}

// Data implements Handler: the reader.
func (sc *srvConn) Data(ep *Endpoint, b []byte) {
	if sc.dead {
		return
	}
	ep.Consume(len(b))
	if sc.readerDone {
		return
	}
	sc.in = append(sc.in, b...)
	n := completePrefix(sc.in, sc.p.Spec.Config.MaxPacketSize)
	if n == 0 {
		return
	}
	sc.src.Reset(sc.in[:n])
	sc.rd.Reset(&sc.src)
	for !sc.readerDone {
		h, body, err := sc.rd.ReadPacket()
		if err != nil {
			var pe *packet.Error
			if errors.As(err, &pe) {
				sc.c.Fail(err) // malformed header or packet too large
				sc.readerDone = true
			} else if !errors.Is(err, io.EOF) {
				sc.readerDone = true
			}
			break
		}
		o := sc.p.w.Oracle
		if o != nil {
			// The broker's queue-full counters, read before each packet and
			// after each PUBLISH, say which messages it dropped for whom
			// (oracle_durable.go).
			o.beforeRoute()
		}
		switch {
		case !sc.gotFirst:
			sc.gotFirst = true
			sc.handleFirst(h, body)
		case h.Type == packet.PUBACK || h.Type == packet.PUBREC || h.Type == packet.PUBCOMP:
			sc.received(h, body)
			sc.c.Handle(h, body)
		case o != nil && h.Type == packet.PUBLISH && (h.Flags>>1)&3 != 0:
			sc.c.Handle(h, body)
			o.afterRoute(sc.rewrite.tenant, h, body, sc.rewrite.version)
		case o != nil && h.Type == packet.SUBSCRIBE:
			sc.c.Handle(h, body) // retained messages it brings may be dropped too
			o.refreshDropBaseline(sc.rewrite.tenant + "\x00" + string(sc.connect.ClientID))
		case h.Type == packet.DISCONNECT:
			if o := sc.p.w.Oracle; o != nil {
				// 0x04: Disconnect with Will Message.
				o.serverDisconnect(sc.ep.Conn.ID, sc.rewrite.version == packet.V5 && len(body) > 0 && body[0] == 0x04)
			}
			sc.c.Handle(h, body)
		default:
			sc.c.Handle(h, body)
		}
		if sc.c.Closing() {
			sc.readerDone = true
		}
	}
	rest := copy(sc.in, sc.in[n:])
	sc.in = sc.in[:rest]
	sc.endBatch()
	if sc.readerDone {
		sc.setDeadline(time.Time{})
		sc.flush()
		return
	}
	// The batch is done: the writer sends what it produced, and the read
	// deadline becomes the keep alive (none when it is 0).
	sc.wake()
	if ka := sc.c.KeepAlive(); ka > 0 {
		sc.setDeadline(sc.p.w.Sim.now.Add(ka))
	} else {
		sc.setDeadline(time.Time{})
	}
}

// maxBatchLag bounds how long after its packets a reader's batch ends
// (endBatch).
const maxBatchLag = time.Millisecond

// endBatch tells the broker that the reader's batch is handled (Conn.Idle,
// which commits what the batch's PUBLISHes journaled). A real server's
// reader says it when it has read all that came, while the goroutines of
// other connections, its own writer and the store's committer run on: their
// commits may land inside the batch. Here the end comes as an event of its
// own, up to maxBatchLag later, so that other events fall inside the batch
// too (the two ordering bugs of batched commits needed that). More data in
// the meantime extends the batch; a connection that ends ends it first.
func (sc *srvConn) endBatch() {
	if sc.idleEv != nil && !sc.idleEv.done {
		return
	}
	sc.idleEv = sc.p.w.Sim.After(sc.p.w.Sim.Uniform(0, maxBatchLag), func() {
		if !sc.finished && !sc.dead {
			sc.c.Idle()
		}
	})
}

// handleFirst hands the first packet to the broker and tells the oracle
// who connected (it decodes the CONNECT once more for that).
func (sc *srvConn) handleFirst(h packet.FixedHeader, body []byte) {
	isConnect := h.Type == packet.CONNECT && sc.connect.Decode(h, body, 0) == nil
	var from uint64
	if sc.p.ds != nil {
		from = sc.p.ds.submitted
	}
	sc.c.Handle(h, body)
	if isConnect && !sc.c.Closing() {
		sc.connected = true
		sc.flow.recvMax = 65535
		if cp := &sc.connect.Properties; sc.connect.Version == packet.V5 && cp.Has(packet.PropReceiveMaximum) {
			sc.flow.recvMax = int(cp.ReceiveMaximum)
		}
		sc.rewrite.tenant = tenantOf(string(sc.connect.Username))
		sc.rewrite.version = sc.connect.Version
		if o := sc.p.w.Oracle; o != nil {
			o.serverConnect(sc.ep.Conn.ID, &sc.connect, from)
		}
	}
}

func (sc *srvConn) setDeadline(t time.Time) {
	sc.deadline = t
	if t.IsZero() {
		return
	}
	if sc.deadlineEv != nil && !sc.deadlineEv.done && !sc.deadlineEv.at.After(t) {
		return // the pending event fires first and re-arms itself
	}
	sc.p.w.Sim.Cancel(sc.deadlineEv)
	sc.deadlineEv = sc.p.w.Sim.At(t, sc.deadlineFired)
}

func (sc *srvConn) deadlineFired() {
	if sc.dead || sc.readerDone || sc.deadline.IsZero() {
		return
	}
	if now := sc.p.w.Sim.now; now.Before(sc.deadline) {
		sc.deadlineEv = sc.p.w.Sim.At(sc.deadline, sc.deadlineFired)
		return
	}
	if sc.connected {
		sc.p.Stats.Timeouts++
	} else {
		sc.p.Stats.ConnectTimeouts++
	}
	sc.p.w.Sim.Note(KindDeadline, sc.p.Host.ID, sc.ep.Conn.ID, "read deadline")
	sc.c.Lost(timeoutError("read deadline"))
	sc.readerDone = true
	sc.flush()
}

var (
	errReset = errors.New("connection reset by peer")
	errEOF   = errors.New("EOF")
)

// timeoutError is a deadline's error, which reports Timeout as net's do.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (timeoutError) Timeout() bool   { return true }

// flush is the writer: it drains Output while the send buffer takes it.
func (sc *srvConn) flush() {
	if sc.finished || sc.dead {
		return
	}
	for !sc.blocked {
		if sc.ep.IsClosed() {
			sc.finish()
			return
		}
		out, closeNow := sc.c.Output(sc.spare)
		if len(out) > 0 {
			if len(out) > sc.p.Stats.MaxBatch {
				sc.p.Stats.MaxBatch = len(out)
			}
			if o := sc.p.w.Oracle; o != nil {
				o.serverBatch(len(out))
				sc.sent(out)
			}
			data := out
			if sc.p.w.bugs != 0 {
				data = sc.rewriteOutput(out)
			}
			ok := sc.ep.Write(data)
			if cap(out) > 256<<10 {
				out = nil
			}
			sc.spare = out[:0]
			if !ok {
				if sc.ep.IsClosed() {
					sc.finish()
					return
				}
				sc.blocked = true
				sc.writeEv = sc.p.w.Sim.After(sc.p.Spec.WriteTimeout, sc.writeTimedOut)
				return
			}
			continue
		}
		if closeNow || sc.readerDone {
			sc.finish()
		}
		return
	}
}

// Writable implements Handler.
func (sc *srvConn) Writable(*Endpoint) {
	if sc.dead {
		return
	}
	sc.blocked = false
	sc.p.w.Sim.Cancel(sc.writeEv)
	sc.flush()
}

func (sc *srvConn) writeTimedOut() {
	if sc.dead || sc.finished || !sc.blocked {
		return
	}
	sc.p.Stats.WriteTimeouts++
	sc.p.w.Sim.Note(KindDeadline, sc.p.Host.ID, sc.ep.Conn.ID, "write deadline")
	sc.c.WriteFailed(timeoutError("write deadline"))
	sc.ep.Abort()
	sc.finish()
}

// Closed implements Handler: the peer closed or reset.
func (sc *srvConn) Closed(_ *Endpoint, reset bool) {
	if sc.dead {
		return
	}
	if reset {
		sc.c.Lost(errReset)
	} else {
		sc.c.Lost(errEOF)
	}
	sc.readerDone = true
	sc.blocked = false
	sc.flush()
}

// finish closes the transport and tells the broker, once.
func (sc *srvConn) finish() {
	if sc.finished {
		return
	}
	sc.finished, sc.readerDone = true, true
	sc.p.w.Sim.Cancel(sc.deadlineEv)
	sc.p.w.Sim.Cancel(sc.writeEv)
	sc.p.w.Sim.Cancel(sc.idleEv)
	sc.c.Idle() // the batch ends before the connection (ConnInfo.IdleEndsBatch)
	sc.ep.Close()
	sc.c.Closed()
	if sc.connected {
		if o := sc.p.w.Oracle; o != nil {
			o.serverClosed(sc.ep.Conn.ID)
		}
	}
	for i, x := range sc.p.conns {
		if x == sc {
			sc.p.conns = append(sc.p.conns[:i], sc.p.conns[i+1:]...)
			break
		}
	}
}
