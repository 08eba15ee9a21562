package sim

import (
	"math"
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// WorkloadSpec describes a group of simulated clients on one host and what
// they do. Every choice is drawn from the run's seed.
type WorkloadSpec struct {
	Name    string
	Host    string
	Clients int
	Tenants []string // clients are spread over these tenants (round robin)
	// V5 is the share of clients speaking MQTT 5.0 (the rest speak 3.1.1).
	V5 float64
	// Persistent is the share of clients with persistent sessions.
	Persistent float64
	// Expiry is the Session Expiry Interval of persistent 5.0 clients
	// (seconds; 0 draws 30s..10m or never).
	Expiry    uint32
	KeepAlive uint16
	// ActionEvery is the mean time between two actions of a client.
	ActionEvery time.Duration
	// Action weights: publish, subscribe, unsubscribe, reconnect (clean
	// DISCONNECT then connect), abort (drop the connection: the will
	// goes), silence (stop sending: keep-alive expiry), resubscribe (an
	// UNSUBSCRIBE and a SUBSCRIBE of one filter, sent back to back).
	Weights [7]int
	// QoS weights of publishes (0, 1, 2); RetainProb: share of publishes to
	// retained topics; CleanProb: share of reconnects with clean start.
	QoS        [3]int
	RetainProb float64
	CleanProb  float64
	// Shares of publishes to the other corners of the topic space: parent
	// levels ("t/1", which "t/1/#" matches), '$' topics ("$d/1", which no
	// filter starting with a wildcard matches), topics the tenant's ACL
	// may deny ("x/0/2"), and four-level topics ("t/1/2/0", over a tight
	// tenant's level limit; 5.0 clients only, which can be refused
	// without losing their connection).
	ParentProb, DollarProb, ACLProb, DeepProb float64
	// WillProb is the share of clients with a will; WillDelayMax bounds a
	// 5.0 will delay (seconds), LongWillProb is the share of delayed wills
	// drawn between WillDelayMax and 40 s (beyond many sessions' expiry).
	WillProb     float64
	WillDelayMax uint32
	LongWillProb float64
	// AwayProb is the share of lost connections after which the client
	// stays away 25 to 40 s (sessions expire, wills go, queues fill).
	AwayProb float64
	// SlowReaders is the share of clients reading at SlowRate bytes/s.
	SlowReaders float64
	SlowRate    int64
	// ReceiveMaxProb is the share of 5.0 clients announcing a Receive
	// Maximum of 2 to 16.
	ReceiveMaxProb float64
	// Packet identifier strategies: the share of clients starting a few
	// ids below the wrap (65535 → 1), and of clients reusing the lowest
	// free id (the rest count up from 1).
	NearWrapProb, LowestFreeProb float64
	// Shared is the share of subscriptions to shared groups.
	Shared float64
	// PayloadMax bounds payload sizes (at least 8 bytes).
	PayloadMax int
	// Topics is the number of distinct leaf topics per level.
	Topics int
}

// DefaultWorkload is a mixed workload: both protocol versions, clean and
// persistent sessions, wildcards ('#' at parent levels, '$' topics
// included), shared groups, QoS 0/1/2, retained messages, wills with
// delays (some beyond the session's expiry), long absences, keep-alive
// expiry, slow readers, small Receive Maximums and the packet identifier
// strategies.
func DefaultWorkload(host string, clients int) WorkloadSpec {
	return WorkloadSpec{Name: host, Host: host, Clients: clients, Tenants: []string{"acme", "globex"},
		V5: 0.5, Persistent: 0.7, KeepAlive: 20, ActionEvery: 400 * time.Millisecond,
		Weights: [7]int{100, 6, 4, 2, 1, 1, 2}, QoS: [3]int{3, 4, 3}, RetainProb: 0.1, CleanProb: 0.15,
		ParentProb: 0.06, DollarProb: 0.03, ACLProb: 0.05, DeepProb: 0.04,
		WillProb: 0.4, WillDelayMax: 8, LongWillProb: 0.25, AwayProb: 0.08, SlowReaders: 0.1, SlowRate: 2 << 10,
		ReceiveMaxProb: 0.3, NearWrapProb: 0.15, LowestFreeProb: 0.25, Shared: 0.15,
		PayloadMax: 512, Topics: 3}
}

// behaviour drives one client.
type behaviour struct {
	spec    *WorkloadSpec
	c       *Client
	quiet   bool // the quiescent phase: reconnect and stay connected
	actEv   *Event
	probing bool
}

func pick(s *Sim, w []int) int {
	total := 0
	for _, x := range w {
		total += x
	}
	if total == 0 {
		return 0
	}
	r := s.Rand.IntN(total)
	for i, x := range w {
		if r < x {
			return i
		}
		r -= x
	}
	return len(w) - 1
}

// newWorkloadClients creates the clients of spec.
func (w *World) newWorkloadClients(spec *WorkloadSpec) {
	s := w.Sim
	h := w.Net.Host(spec.Host)
	for i := 0; i < spec.Clients; i++ {
		tenant := spec.Tenants[i%len(spec.Tenants)]
		l := w.limits(tenant)
		cs := ClientSpec{ClientID: spec.Name + "-" + strconv.Itoa(i), Tenant: tenant,
			Version: packet.V311, KeepAlive: spec.KeepAlive}
		if s.Chance(spec.V5) {
			cs.Version = packet.V5
		}
		cs.Persistent = s.Chance(spec.Persistent)
		if cs.Persistent && cs.Version == packet.V5 {
			cs.Expiry = spec.Expiry
			if cs.Expiry == 0 {
				if s.Chance(0.3) {
					cs.Expiry = math.MaxUint32
				} else {
					cs.Expiry = uint32(30 + s.Rand.IntN(600))
				}
			}
		}
		if s.Chance(spec.WillProb) {
			ws := &WillSpec{Topic: "w/" + cs.ClientID, QoS: min(packet.QoS(1+s.Rand.IntN(2)), l.maxQoS)}
			if cs.Version == packet.V5 && spec.WillDelayMax > 0 && s.Chance(0.6) {
				ws.Delay = uint32(1 + s.Rand.IntN(int(spec.WillDelayMax)))
				if s.Chance(spec.LongWillProb) {
					ws.Delay = spec.WillDelayMax + uint32(s.Rand.IntN(int(max(1, 40-int(spec.WillDelayMax)))))
				}
			}
			cs.Will = ws
		}
		if s.Chance(spec.SlowReaders) {
			cs.ReadRate = spec.SlowRate
		}
		if cs.Version == packet.V5 && s.Chance(spec.ReceiveMaxProb) {
			cs.ReceiveMax = uint16(2 + s.Rand.IntN(15))
		}
		switch r := s.Rand.Float64(); {
		case r < spec.NearWrapProb:
			cs.FirstPID = uint16(65535 - s.Rand.IntN(8))
		case r < spec.NearWrapProb+spec.LowestFreeProb:
			cs.LowestFreePID = true
		}
		c := newClient(w, h, cs, len(w.Clients))
		c.b = &behaviour{spec: spec, c: c}
		w.Clients = append(w.Clients, c)
		start := s.Uniform(0, 2*time.Second)
		s.After(start, func() { c.Connect(false) })
	}
}

// The topic universe of a tenant: t/<a>/<b> for ordinary traffic (t/<a>
// at the parent level, t/<a>/<b>/<c> four levels deep), r/<a> and r for
// retained messages, s/<a> for shared groups only, $d/<a> for '$' topics
// (some retained), x/<a>/<b> under the ACL's rules, w/<client> for wills.
func (b *behaviour) topic() (string, bool) {
	s := b.c.w.Sim
	sp := b.spec
	n := max(1, sp.Topics)
	lvl := func() string { return strconv.Itoa(s.Rand.IntN(n)) }
	switch r := s.Rand.Float64(); {
	case r < sp.RetainProb:
		if s.Chance(0.15) {
			return "r", true
		}
		return "r/" + lvl(), true
	case r < sp.RetainProb+sp.Shared:
		return "s/" + lvl(), false
	case r < sp.RetainProb+sp.Shared+sp.DollarProb:
		return "$d/" + lvl(), s.Chance(0.3)
	case r < sp.RetainProb+sp.Shared+sp.DollarProb+sp.ParentProb:
		return "t/" + lvl(), false
	case r < sp.RetainProb+sp.Shared+sp.DollarProb+sp.ParentProb+sp.ACLProb:
		return "x/" + lvl() + "/" + lvl(), false
	case r < sp.RetainProb+sp.Shared+sp.DollarProb+sp.ParentProb+sp.ACLProb+sp.DeepProb && b.c.Spec.Version == packet.V5:
		return "t/" + lvl() + "/" + lvl() + "/" + lvl(), false
	}
	return "t/" + lvl() + "/" + lvl(), false
}

func (b *behaviour) filter() string {
	s := b.c.w.Sim
	n := strconv.Itoa(s.Rand.IntN(max(1, b.spec.Topics)))
	if s.Chance(b.spec.Shared) {
		g := "$share/g" + strconv.Itoa(s.Rand.IntN(2)) + "/"
		if s.Chance(0.5) {
			return g + "s/+"
		}
		return g + "s/" + n
	}
	switch s.Rand.IntN(20) / 2 {
	case 0:
		return "t/#" // the parent level "t" is never published
	case 1:
		return "t/" + n + "/+"
	case 2:
		return "t/+/" + n
	case 3:
		return "t/" + n + "/" + n
	case 4:
		return "r/+"
	case 5:
		return "+/" + n + "/+" // never an r/ or s/ topic
	case 6:
		break // t/<n>/#
	case 7:
		if s.Chance(0.5) {
			return "+/" + n // t/<n>, r/<n>, s/<n>, never $d/<n>
		}
		if s.Chance(0.5) {
			return "$d/#"
		}
		return "$d/+"
	case 8:
		switch s.Rand.IntN(3) {
		case 0:
			return "x/" + n + "/#"
		case 1:
			return "x/+/" + n
		}
		return "x/#" // the ACL may deny it whole
	default:
		switch {
		case s.Chance(0.4):
			return "t/+/+/+" // four levels: over a tight tenant's limit
		case s.Chance(0.3):
			return "#" // everything but '$' topics
		}
		return "r/#" // "r" and r/<a>
	}
	return "t/" + n + "/#" // t/<n> too
}

func (b *behaviour) connected(c *Client, present bool) {
	if !present {
		// A new session: subscribe again.
		k := 1 + c.w.Sim.Rand.IntN(3)
		for i := 0; i < k; i++ {
			c.Subscribe(b.filter(), packet.QoS(c.w.Sim.Rand.IntN(3)))
		}
	}
	b.schedule()
}

func (b *behaviour) disconnected(c *Client) {
	s := c.w.Sim
	s.Cancel(b.actEv)
	d := s.Uniform(100*time.Millisecond, 3*time.Second)
	switch {
	case b.quiet:
		d = 100 * time.Millisecond
	case s.Chance(b.spec.AwayProb):
		d = s.Uniform(25*time.Second, 40*time.Second)
	}
	clean := !b.quiet && s.Chance(b.spec.CleanProb)
	s.After(d, func() {
		if c.state == cDown {
			c.Connect(clean)
		}
	})
}

func (b *behaviour) schedule() {
	if b.quiet {
		return
	}
	s := b.c.w.Sim
	s.Cancel(b.actEv)
	b.actEv = s.After(s.Exp(b.spec.ActionEvery), b.act)
}

func (b *behaviour) act() {
	c := b.c
	if b.quiet || !c.Up() || c.silent {
		return
	}
	s := c.w.Sim
	switch pick(s, b.spec.Weights[:]) {
	case 0:
		t, retain := b.topic()
		qos := packet.QoS(pick(s, b.spec.QoS[:]))
		empty := retain && s.Chance(0.2)
		size := 8 + s.Rand.IntN(max(1, b.spec.PayloadMax-7))
		if retain {
			size = 8 + s.Rand.IntN(64)
		}
		c.Publish(t, qos, retain, size, empty)
		s.Note(KindAction, c.Host.ID, c.connID, "publish")
	case 1:
		c.Subscribe(b.filter(), packet.QoS(s.Rand.IntN(3)))
		s.Note(KindAction, c.Host.ID, c.connID, "subscribe")
	case 2:
		if len(c.subs) > 0 {
			c.Unsubscribe(c.subs[s.Rand.IntN(len(c.subs))].filter)
			s.Note(KindAction, c.Host.ID, c.connID, "unsubscribe")
		}
	case 3:
		s.Note(KindAction, c.Host.ID, c.connID, "disconnect")
		c.Disconnect()
		return
	case 4:
		s.Note(KindAction, c.Host.ID, c.connID, "abort")
		c.Abort()
		return
	case 5:
		s.Note(KindAction, c.Host.ID, c.connID, "silence")
		c.Silence()
		return
	case 6:
		if len(c.subs) > 0 {
			f := c.subs[s.Rand.IntN(len(c.subs))].filter
			c.Unsubscribe(f)
			c.Subscribe(f, packet.QoS(s.Rand.IntN(3)))
			s.Note(KindAction, c.Host.ID, c.connID, "resubscribe")
		}
	}
	b.schedule()
}

// quiesce stops the workload: the client reconnects if needed and stays.
func (b *behaviour) quiesce() {
	b.quiet = true
	b.c.w.Sim.Cancel(b.actEv)
}

func (c *Client) setSub(filter string, qos packet.QoS) {
	for i := range c.subs {
		if c.subs[i].filter == filter {
			c.subs[i].qos = qos
			return
		}
	}
	c.subs = append(c.subs, clientSub{filter, qos})
}

func (c *Client) dropSub(filter string) {
	for i := range c.subs {
		if c.subs[i].filter == filter {
			c.subs = append(c.subs[:i], c.subs[i+1:]...)
			return
		}
	}
}

// --- Monitors: one per tenant, on the broker's host. ---

// probeFilter is what a monitor's probe of the retained store reads: the
// retained messages of the other topics (the '$' ones) are checked at
// restarts only.
const probeFilter = "r/#"

// monitorBehaviour subscribes to every will topic and probes the retained
// store now and then.
type monitorBehaviour struct {
	c       *Client
	every   time.Duration
	probeEv *Event
	stage   int // 0 idle, 1 probing (SUBSCRIBE and PINGREQ sent)
	pingSeq uint64
}

func (w *World) newMonitor(tenant string, every time.Duration) *Client {
	cs := ClientSpec{ClientID: "monitor-" + tenant, Tenant: tenant, Version: packet.V5, Persistent: true,
		Expiry: math.MaxUint32, KeepAlive: 30}
	c := newClient(w, w.BrokerHost, cs, len(w.Clients))
	c.Monitor = true
	mb := &monitorBehaviour{c: c, every: every}
	c.mb = mb
	w.Clients = append(w.Clients, c)
	w.monitors[tenant] = c
	w.Sim.After(0, func() { c.Connect(false) })
	return c
}

func (mb *monitorBehaviour) connected(present bool) {
	c := mb.c
	if !present {
		c.Subscribe("w/#", packet.QoS1)
	}
	mb.stage = 0
	mb.arm(mb.c.w.Sim.Uniform(mb.every/2, mb.every))
}

func (mb *monitorBehaviour) arm(d time.Duration) {
	s := mb.c.w.Sim
	s.Cancel(mb.probeEv)
	mb.probeEv = s.After(d, mb.probe)
}

func (mb *monitorBehaviour) probe() {
	c := mb.c
	if !c.Up() {
		return
	}
	c.w.Oracle.probeStart(c)
	c.Subscribe(probeFilter, packet.QoS0)
	mb.pingSeq = c.Ping()
	mb.stage = 1
}

func (mb *monitorBehaviour) pingAnswered(seq uint64) {
	c := mb.c
	if mb.stage != 1 || seq != mb.pingSeq {
		return
	}
	mb.stage = 0
	c.w.Oracle.probeEnd(c, true)
	c.Unsubscribe(probeFilter)
	if !c.w.stopping {
		mb.arm(c.w.Sim.Uniform(mb.every/2, mb.every))
	}
}

func (mb *monitorBehaviour) disconnected() {
	c := mb.c
	if mb.stage == 1 {
		c.w.Oracle.probeEnd(c, false)
		mb.stage = 0
	}
	c.w.Sim.Cancel(mb.probeEv)
	c.w.Sim.After(100*time.Millisecond, func() {
		if c.state == cDown {
			c.Connect(false)
		}
	})
}
