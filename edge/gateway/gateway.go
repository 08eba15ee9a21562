package gateway

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// Config configures a Gateway. Zero fields take the defaults.
type Config struct {
	// MaxDevices bounds the devices the gateway serves (1000); beyond it
	// the rest, in name order, are refused with a reason.
	MaxDevices int
	// BackoffMin and BackoffMax bound the delay after a failed request
	// (1s, 1m): it doubles with each failure in a row, from the larger of
	// BackoffMin and the device's poll period.
	BackoffMin, BackoffMax time.Duration
	// MaxReports bounds the reports waiting for Ready (1000); the oldest
	// are dropped beyond it, and counted.
	MaxReports int
	// Slack is added to an operation's own timeouts before the gateway
	// gives up on its answer (5s).
	Slack time.Duration
}

func (c *Config) defaults() {
	if c.MaxDevices <= 0 {
		c.MaxDevices = 1000
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(c.BackoffMin, time.Minute)
	}
	if c.MaxReports <= 0 {
		c.MaxReports = 1000
	}
	if c.Slack <= 0 {
		c.Slack = 5 * time.Second
	}
}

// Write is one Modbus write: Registers at Address of the holding
// registers, or Bit at Address of the coils.
type Write struct {
	Property  string
	Table     string
	Address   uint16
	Registers []uint16
	Bit       bool
}

// Op is a Modbus operation for the runtime: a poll (Reads, in order) or a
// write. A device has at most one in flight; its answer is PollDone or
// WriteDone with the same ID.
type Op struct {
	ID       uint64
	Device   string
	Endpoint api.ModbusEndpoint // defaults applied
	Reads    []Read
	Write    *Write
}

// ReadResult is the answer to one Read: Count registers or bits, or the
// device's refusal (a Modbus exception) in Err.
type ReadResult struct {
	Registers []uint16
	Bits      []bool
	Err       string
}

// Event says that a device changed state (unreachable, back, refused).
type Event struct {
	Device  string
	Message string
}

// Ready is what the runtime must do.
type Ready struct {
	Ops []Op
	// Reports go to the outbox (agent.DeviceReported).
	Reports []api.DeviceReport
	// Close: the runtime drops these devices' connections (the device is
	// gone or its endpoint changed).
	Close  []string
	Events []Event
}

// Stats count what the gateway did.
type Stats struct {
	Polls, PollFailures, Timeouts    uint64
	ReadErrors, DecodeErrors         uint64
	Writes, WriteFailures            uint64
	WritesRefused                    uint64 // desired values that cannot be written (not writable, not mapped, bad value)
	Reports, ReportsDropped          uint64
	MQTTReports, MQTTRefused         uint64 // reports from the local broker; refused: not an object, no valid property
	MQTTPropsDropped                 uint64 // properties of MQTT reports not in the model or of the wrong type
	DevicesRefused, ConfigureChanges uint64
}

// device states.
const (
	stConnecting = "connecting"
	stOK         = "ok"
	stFailing    = "failing"
	stInvalid    = "invalid"
	stMQTT       = "mqtt"
)

type device struct {
	spec     api.DeviceSpec
	ep       api.ModbusEndpoint
	reads    []Read
	points   []point
	props    map[string]*api.Property
	state    string
	reason   string
	failures int
	next     time.Time // next poll (or retry)
	inflight uint64    // op id, 0 when none
	deadline time.Time // of the op in flight
	bound    time.Duration
	// writes wait, by property; written is the desired version fully
	// written.
	writes  map[string]Write
	written uint64
	// last reported values and when all were last reported.
	last     map[string]string
	lastFull time.Time
	reported bool // once: the first poll reports every value
}

// Gateway is the device gateway's core. See the package documentation.
type Gateway struct {
	cfg     Config
	devices map[string]*device
	names   []string // sorted
	nextID  uint64
	out     Ready
	stats   Stats
}

// New returns a gateway with no devices.
func New(cfg Config) *Gateway {
	cfg.defaults()
	return &Gateway{cfg: cfg, devices: map[string]*device{}}
}

// Stats returns the counters.
func (g *Gateway) Stats() Stats { return g.stats }

// Ready returns what the runtime must do and clears it.
func (g *Gateway) Ready() Ready {
	r := g.out
	g.out = Ready{}
	return r
}

// Devices returns every device's state, in name order.
func (g *Gateway) Devices() []api.DeviceState {
	out := make([]api.DeviceState, 0, len(g.names))
	for _, n := range g.names {
		d := g.devices[n]
		out = append(out, api.DeviceState{Name: n, State: d.state, Reason: d.reason, Failures: d.failures})
	}
	return out
}

// APIStats returns the counters as the node reports them.
func (g *Gateway) APIStats() api.GatewayStats {
	s := g.stats
	return api.GatewayStats{Polls: s.Polls, PollFailures: s.PollFailures, Timeouts: s.Timeouts, ReadErrors: s.ReadErrors,
		DecodeErrors: s.DecodeErrors, Writes: s.Writes, WriteFailures: s.WriteFailures, WritesRefused: s.WritesRefused,
		Reports: s.Reports, ReportsDropped: s.ReportsDropped, MQTTReports: s.MQTTReports, MQTTRefused: s.MQTTRefused,
		MQTTDropped: s.MQTTPropsDropped}
}

// Configure sets the node's devices (its desired state's, sorted or not).
// New devices start polling at now; a device whose endpoint or model
// changed starts over (its connection closed); a desired version not yet
// written queues the writes of its writable mapped properties.
func (g *Gateway) Configure(specs []api.DeviceSpec, now time.Time) {
	specs = slices.Clone(specs)
	slices.SortFunc(specs, func(a, b api.DeviceSpec) int { return cmp.Compare(a.Name, b.Name) })
	specs = slices.CompactFunc(specs, func(a, b api.DeviceSpec) bool { return a.Name == b.Name })
	keep := map[string]bool{}
	for i, s := range specs {
		if i >= g.cfg.MaxDevices {
			if _, ok := g.devices[s.Name]; !ok {
				g.stats.DevicesRefused++
				g.event(s.Name, fmt.Sprintf("refused: the gateway serves at most %d devices", g.cfg.MaxDevices))
			}
			continue
		}
		keep[s.Name] = true
		g.configureOne(s, now)
	}
	for _, n := range g.names {
		if !keep[n] {
			if g.devices[n].spec.Modbus != nil {
				g.out.Close = append(g.out.Close, n)
			}
			delete(g.devices, n)
			g.stats.ConfigureChanges++
		}
	}
	g.names = g.names[:0]
	for n := range g.devices {
		g.names = append(g.names, n)
	}
	slices.Sort(g.names)
}

func (g *Gateway) configureOne(s api.DeviceSpec, now time.Time) {
	old := g.devices[s.Name]
	if old != nil && sameShape(&old.spec, &s) {
		old.spec.Desired, old.spec.DesiredVersion = s.Desired, s.DesiredVersion
		g.queueWrites(old, now)
		return
	}
	if old != nil && old.spec.Modbus != nil {
		g.out.Close = append(g.out.Close, s.Name)
	}
	g.stats.ConfigureChanges++
	d := &device{spec: s, props: map[string]*api.Property{}, writes: map[string]Write{}, last: map[string]string{}, next: now}
	for i := range s.Properties {
		d.props[s.Properties[i].Name] = &d.spec.Properties[i]
	}
	g.devices[s.Name] = d
	if s.Modbus == nil {
		d.state = stMQTT
		return
	}
	d.ep = s.Modbus.WithDefaults()
	if err := validateSpec(&s); err != nil {
		d.state, d.reason = stInvalid, err.Error()
		g.event(s.Name, "invalid: "+d.reason)
		return
	}
	d.state = stConnecting
	d.reads, d.points = plan(s.Properties)
	g.queueWrites(d, now)
}

// sameShape: the same endpoint and model (only desired values differ).
func sameShape(a, b *api.DeviceSpec) bool {
	ja, _ := json.Marshal(struct {
		M string
		P []api.Property
		E *api.ModbusEndpoint
	}{a.Model, a.Properties, a.Modbus})
	jb, _ := json.Marshal(struct {
		M string
		P []api.Property
		E *api.ModbusEndpoint
	}{b.Model, b.Properties, b.Modbus})
	return string(ja) == string(jb)
}

// validateSpec checks what the cloud already checked: a node never
// trusts its input to be sane.
func validateSpec(s *api.DeviceSpec) error {
	var errs []error
	if err := s.Modbus.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	}
	m := api.DeviceModel{Name: s.Model, Properties: s.Properties}
	if err := m.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("model: %w", err))
	}
	return errors.Join(errs...)
}

// queueWrites turns a desired version not yet written into writes.
func (g *Gateway) queueWrites(d *device, now time.Time) {
	if d.spec.Modbus == nil || d.state == stInvalid || d.spec.DesiredVersion <= d.written {
		return
	}
	keys := make([]string, 0, len(d.spec.Desired))
	for k := range d.spec.Desired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		prop := d.props[k]
		var err error
		switch {
		case prop == nil:
			err = errors.New("not in the model")
		case !prop.Writable:
			err = errors.New("not writable")
		case prop.Modbus == nil:
			err = errors.New("not mapped to a register")
		}
		var w Write
		if err == nil {
			p := prop.Modbus
			w = Write{Property: k, Table: p.Table, Address: p.Address}
			w.Registers, w.Bit, err = Encode(p, prop, d.spec.Desired[k])
		}
		if err != nil {
			g.stats.WritesRefused++
			g.event(d.spec.Name, fmt.Sprintf("desired %s = %s not written: %v", k, d.spec.Desired[k], err))
			continue
		}
		d.writes[k] = w
	}
	if len(d.writes) == 0 {
		d.written = d.spec.DesiredVersion
	}
}

// Tick starts what is due: writes first, then polls; and gives up on
// operations whose answer is overdue.
func (g *Gateway) Tick(now time.Time) {
	for _, n := range g.names {
		d := g.devices[n]
		if d.spec.Modbus == nil || d.state == stInvalid {
			continue
		}
		if d.inflight != 0 {
			if !now.Before(d.deadline) {
				g.stats.Timeouts++
				d.inflight = 0
				g.fail(d, "no answer within "+d.bound.String(), now)
			}
			continue
		}
		if now.Before(d.next) {
			continue
		}
		g.nextID++
		op := Op{ID: g.nextID, Device: n, Endpoint: d.ep}
		if k := firstKey(d.writes); k != "" {
			w := d.writes[k]
			op.Write = &w
			d.bound = g.opBound(d, 1)
		} else {
			op.Reads = d.reads
			d.bound = g.opBound(d, len(d.reads))
			g.stats.Polls++
		}
		d.deadline = now.Add(d.bound)
		d.inflight = op.ID
		g.out.Ops = append(g.out.Ops, op)
	}
}

// opBound is how long an operation of n requests may take: its timeouts
// (and a connection's) plus the slack.
func (g *Gateway) opBound(d *device, n int) time.Duration {
	return time.Duration(n+1)*d.ep.Timeout.D() + g.cfg.Slack
}

func firstKey(m map[string]Write) string {
	first := ""
	for k := range m {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

// NextDeadline returns when Tick has something to do (zero: nothing).
func (g *Gateway) NextDeadline() time.Time {
	var t time.Time
	for _, n := range g.names {
		d := g.devices[n]
		if d.spec.Modbus == nil || d.state == stInvalid {
			continue
		}
		at := d.next
		if d.inflight != 0 {
			at = d.deadline
		}
		if t.IsZero() || at.Before(t) {
			t = at
		}
	}
	return t
}

// current returns the device whose operation id answers, or nil (a late
// answer, a device removed or reconfigured since).
func (g *Gateway) current(name string, id uint64) *device {
	d := g.devices[name]
	if d == nil || d.inflight != id || id == 0 {
		return nil
	}
	d.inflight = 0
	return d
}

// fail records a failed operation: the device backs off.
func (g *Gateway) fail(d *device, reason string, now time.Time) {
	d.failures++
	if d.state != stFailing || d.reason != reason {
		g.event(d.spec.Name, "unreachable: "+reason)
	}
	d.state, d.reason = stFailing, reason
	b := max(g.cfg.BackoffMin, d.ep.Poll.D())
	for i := 1; i < d.failures && b < g.cfg.BackoffMax; i++ {
		b *= 2
	}
	d.next = now.Add(min(b, g.cfg.BackoffMax))
}

func (g *Gateway) succeed(d *device) {
	if d.state == stFailing {
		g.event(d.spec.Name, "reachable again")
	}
	d.state, d.reason, d.failures = stOK, "", 0
}

// PollDone is the answer to a poll: one result per Read, or err when the
// device could not be reached (connection, timeout: the runtime has
// dropped the connection).
func (g *Gateway) PollDone(device string, id uint64, results []ReadResult, err error, now time.Time) {
	d := g.current(device, id)
	if d == nil {
		return
	}
	if err == nil && len(results) != len(d.reads) {
		err = fmt.Errorf("%d results for %d reads", len(results), len(d.reads))
	}
	if err != nil {
		g.stats.PollFailures++
		g.fail(d, err.Error(), now)
		return
	}
	g.succeed(d)
	d.next = now.Add(d.ep.Poll.D())
	full := !d.reported || now.Sub(d.lastFull) >= d.ep.ReportEvery.D()
	props := map[string]json.RawMessage{}
	for _, pt := range d.points {
		rr := results[pt.read]
		if rr.Err != "" {
			continue
		}
		v, err := decodeAt(&pt, &rr)
		if err != nil {
			g.stats.DecodeErrors++
			g.event(device, pt.prop.Name+": "+err.Error())
			continue
		}
		if full || d.last[pt.prop.Name] != string(v) {
			props[pt.prop.Name] = v
		}
		d.last[pt.prop.Name] = string(v)
	}
	for _, rr := range results {
		if rr.Err != "" {
			g.stats.ReadErrors++
		}
	}
	if full {
		d.lastFull, d.reported = now, true
	}
	if len(props) > 0 {
		g.report(api.DeviceReport{Device: device, Props: props})
	}
}

// decodeAt decodes a point from its read's result, checking the bounds
// of what the runtime returned.
func decodeAt(pt *point, rr *ReadResult) (json.RawMessage, error) {
	p := pt.prop.Modbus
	if p.IsBit() {
		if pt.start >= len(rr.Bits) {
			return nil, fmt.Errorf("%d bits read, want %d", len(rr.Bits), pt.start+1)
		}
		return Decode(p, &pt.prop, nil, rr.Bits[pt.start])
	}
	if pt.start+p.Count() > len(rr.Registers) {
		return nil, fmt.Errorf("%d registers read, want %d", len(rr.Registers), pt.start+p.Count())
	}
	return Decode(p, &pt.prop, rr.Registers[pt.start:pt.start+p.Count()], false)
}

// Refused is a device's refusal of a request (a Modbus exception):
// the device answered, so retrying the same request will not help.
type Refused struct{ Reason string }

func (r *Refused) Error() string { return "refused by the device: " + r.Reason }

// WriteDone is the answer to a write: err is a *Refused or the failure to
// reach the device. A write that failed to reach it is retried after the
// backoff; a refused one is given up (and reported as an event). After
// the last write of a desired version the device is polled at once.
func (g *Gateway) WriteDone(device string, id uint64, err error, now time.Time) {
	d := g.current(device, id)
	if d == nil {
		return
	}
	k := firstKey(d.writes)
	if err != nil {
		g.stats.WriteFailures++
		var r *Refused
		if errors.As(err, &r) { // the device answered: it is reachable
			g.succeed(d)
			g.event(device, fmt.Sprintf("desired %s not written: %v", k, err))
			delete(d.writes, k)
		} else {
			g.fail(d, err.Error(), now)
			return
		}
	} else {
		g.stats.Writes++
		delete(d.writes, k)
		g.succeed(d)
	}
	if len(d.writes) == 0 {
		d.written = d.spec.DesiredVersion
		d.next = now // read back what was written
	}
}

// MQTTReport is a report a device published on the local broker
// (devices/<device>/reported): a JSON object of property values. For a
// device the node knows, properties not in its model or of the wrong type
// are dropped and counted; a device the node does not know yet (bound
// while the node was offline) is passed on for the cloud to check.
func (g *Gateway) MQTTReport(device string, payload []byte) {
	g.stats.MQTTReports++
	var props map[string]json.RawMessage
	if api.ValidName(device) != nil || json.Unmarshal(payload, &props) != nil || props == nil {
		g.stats.MQTTRefused++
		return
	}
	if d := g.devices[device]; d != nil && len(d.props) > 0 {
		for k, v := range props {
			if p := d.props[k]; p == nil || p.CheckValue(v) != nil {
				delete(props, k)
				g.stats.MQTTPropsDropped++
			}
		}
	}
	if len(props) == 0 {
		g.stats.MQTTRefused++
		return
	}
	g.report(api.DeviceReport{Device: device, Props: props})
}

func (g *Gateway) report(r api.DeviceReport) {
	g.stats.Reports++
	if len(g.out.Reports) >= g.cfg.MaxReports {
		g.out.Reports = g.out.Reports[1:]
		g.stats.ReportsDropped++
	}
	g.out.Reports = append(g.out.Reports, r)
}

func (g *Gateway) event(device, msg string) {
	if len(g.out.Events) >= g.cfg.MaxReports {
		return // the log is bounded too; the counters keep the tally
	}
	g.out.Events = append(g.out.Events, Event{Device: device, Message: msg})
}
