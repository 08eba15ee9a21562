package gateway

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meterProps() []api.Property {
	return []api.Property{
		{Name: "temp", Type: "float", Modbus: &api.ModbusPoint{Table: "input", Address: 0, Type: "int16", Scale: 0.1}},
		{Name: "energy", Type: "int", Modbus: &api.ModbusPoint{Table: "input", Address: 1, Type: "uint32"}},
		{Name: "setpoint", Type: "float", Writable: true, Modbus: &api.ModbusPoint{Table: "holding", Address: 10, Type: "int16", Scale: 0.1}},
		{Name: "relay", Type: "bool", Writable: true, Modbus: &api.ModbusPoint{Table: "coil", Address: 3, Type: "bool"}},
		{Name: "name", Type: "string", Modbus: &api.ModbusPoint{Table: "holding", Address: 20, Type: "string", Registers: 2}},
		{Name: "note", Type: "string"}, // not mapped: MQTT only
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	reads, pts := plan(meterProps())
	want := []Read{
		{Table: "coil", Address: 3, Count: 1},
		{Table: "holding", Address: 10, Count: 1},
		{Table: "holding", Address: 20, Count: 2}, // not merged with 10: 11-19 are never read
		{Table: "input", Address: 0, Count: 3},    // temp and energy touch
	}
	if diff := cmp.Diff(want, reads); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
	type at struct {
		Name        string
		Read, Start int
	}
	var got []at
	for _, p := range pts {
		got = append(got, at{p.prop.Name, p.read, p.start})
	}
	wantPts := []at{{"energy", 3, 1}, {"name", 2, 0}, {"relay", 0, 0}, {"setpoint", 1, 0}, {"temp", 3, 0}}
	if diff := cmp.Diff(wantPts, got); diff != "" {
		t.Errorf("points (-want +got):\n%s", diff)
	}
	// A block never exceeds the protocol's bound.
	var many []api.Property
	for i := range 130 {
		many = append(many, api.Property{Name: "p" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Type: "int",
			Modbus: &api.ModbusPoint{Table: "holding", Address: uint16(i), Type: "uint16"}})
	}
	reads, _ = plan(many)
	if diff := cmp.Diff([]Read{{"holding", 0, 125}, {"holding", 125, 5}}, reads); diff != "" {
		t.Errorf("130 registers (-want +got):\n%s", diff)
	}
}

func meter(name string, version uint64, desired map[string]json.RawMessage) api.DeviceSpec {
	return api.DeviceSpec{Name: name, Model: "meter", Properties: meterProps(), Desired: desired, DesiredVersion: version,
		Modbus: &api.ModbusEndpoint{Address: "127.0.0.1:502", Poll: api.Duration(time.Second), Timeout: api.Duration(time.Second), ReportEvery: api.Duration(time.Minute)}}
}

// answer gives the results of a poll of meterProps.
func answer(temp int16, energy uint32, relay bool) []ReadResult {
	return []ReadResult{
		{Bits: []bool{relay}},
		{Registers: []uint16{205}},
		{Registers: []uint16{0x4142, 0x4344}},
		{Registers: []uint16{uint16(temp), uint16(energy >> 16), uint16(energy)}},
	}
}

func props(kv ...string) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(kv[i+1])
	}
	return m
}

func TestPollAndReport(t *testing.T) {
	t.Parallel()
	g := New(Config{})
	g.Configure([]api.DeviceSpec{meter("m1", 0, nil)}, t0)
	g.Tick(t0)
	r := g.Ready()
	if len(r.Ops) != 1 || r.Ops[0].Write != nil || len(r.Ops[0].Reads) != 4 || r.Ops[0].Endpoint.Address != "127.0.0.1:502" {
		t.Fatalf("first tick: %+v, want one poll of 4 reads", r.Ops)
	}
	op := r.Ops[0]
	// Nothing more while the poll is in flight.
	g.Tick(t0.Add(2 * time.Second))
	if r := g.Ready(); len(r.Ops) != 0 {
		t.Fatalf("a second op while one is in flight: %+v", r.Ops)
	}
	g.PollDone("m1", op.ID, answer(215, 70000, true), nil, t0.Add(100*time.Millisecond))
	r = g.Ready()
	want := []api.DeviceReport{{Device: "m1", Props: props("energy", "70000", "name", `"ABCD"`, "relay", "true", "setpoint", "20.5", "temp", "21.5")}}
	if diff := cmp.Diff(want, r.Reports); diff != "" {
		t.Fatalf("first report (-want +got):\n%s", diff)
	}
	if next := g.NextDeadline(); !next.Equal(t0.Add(1100 * time.Millisecond)) {
		t.Fatalf("next poll at %v, want a period after the answer", next.Sub(t0))
	}
	// The next poll reports what changed only.
	now := t0.Add(1100 * time.Millisecond)
	g.Tick(now)
	op = g.Ready().Ops[0]
	g.PollDone("m1", op.ID, answer(216, 70000, true), nil, now)
	if diff := cmp.Diff([]api.DeviceReport{{Device: "m1", Props: props("temp", "21.6")}}, g.Ready().Reports); diff != "" {
		t.Fatalf("change report (-want +got):\n%s", diff)
	}
	// Nothing changed: no report, until ReportEvery has passed.
	now = now.Add(time.Second)
	g.Tick(now)
	op = g.Ready().Ops[0]
	g.PollDone("m1", op.ID, answer(216, 70000, true), nil, now)
	if r := g.Ready(); len(r.Reports) != 0 {
		t.Fatalf("unchanged values reported: %+v", r.Reports)
	}
	now = t0.Add(time.Minute + time.Second)
	g.Tick(now)
	op = g.Ready().Ops[0]
	g.PollDone("m1", op.ID, answer(216, 70000, true), nil, now)
	if r := g.Ready(); len(r.Reports) != 1 || len(r.Reports[0].Props) != 5 {
		t.Fatalf("after ReportEvery: %+v, want every value", r.Reports)
	}
	// A refused read leaves its points out; a late answer is ignored.
	now = now.Add(time.Second)
	g.Tick(now)
	op = g.Ready().Ops[0]
	res := answer(300, 70001, false)
	res[3].Err = "illegal data address"
	g.PollDone("m1", op.ID, res, nil, now)
	g.PollDone("m1", op.ID, answer(1, 1, true), nil, now)
	if diff := cmp.Diff([]api.DeviceReport{{Device: "m1", Props: props("relay", "false")}}, g.Ready().Reports); diff != "" {
		t.Fatalf("partial report (-want +got):\n%s", diff)
	}
	if s := g.Stats(); s.ReadErrors != 1 || s.Polls != 5 || s.Reports != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBackoffAndTimeout(t *testing.T) {
	t.Parallel()
	g := New(Config{BackoffMin: time.Second, BackoffMax: 8 * time.Second, Slack: time.Second})
	g.Configure([]api.DeviceSpec{meter("m1", 0, nil)}, t0)
	now := t0
	var delays []time.Duration
	var events []Event
	for range 6 {
		g.Tick(now)
		r := g.Ready()
		events = append(events, r.Events...)
		op := r.Ops[0]
		g.PollDone("m1", op.ID, nil, errors.New("connection refused"), now)
		next := g.NextDeadline()
		delays = append(delays, next.Sub(now))
		now = next
	}
	if diff := cmp.Diff([]time.Duration{1, 2, 4, 8, 8, 8}, scaleDown(delays)); diff != "" {
		t.Fatalf("backoff in seconds (-want +got):\n%s", diff)
	}
	events = append(events, g.Ready().Events...)
	if diff := cmp.Diff([]Event{{"m1", "unreachable: connection refused"}}, events); diff != "" {
		t.Fatalf("events: one per change of state (-want +got):\n%s", diff)
	}
	if st := g.Devices()[0]; st.State != "failing" || st.Failures != 6 {
		t.Fatalf("status %+v", st)
	}
	// An answer that never comes: failed after the timeouts and slack
	// (5 reads + 1 connection × 1s + 1s), and the late answer is ignored.
	g.Tick(now)
	op := g.Ready().Ops[0]
	if dl := g.NextDeadline(); dl.Sub(now) != 6*time.Second {
		t.Fatalf("deadline %v after the op, want 6s", dl.Sub(now))
	}
	now = now.Add(6 * time.Second)
	g.Tick(now)
	g.PollDone("m1", op.ID, answer(1, 1, true), nil, now)
	r := g.Ready()
	if len(r.Reports) != 0 || g.Stats().Timeouts != 1 {
		t.Fatalf("late answer used: %+v, stats %+v", r, g.Stats())
	}
	if diff := cmp.Diff([]Event{{"m1", "unreachable: no answer within 6s"}}, r.Events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// Back: the failure count starts over.
	now = g.NextDeadline()
	g.Tick(now)
	op = g.Ready().Ops[0]
	g.PollDone("m1", op.ID, answer(1, 1, true), nil, now)
	r = g.Ready()
	if len(r.Reports) != 1 || g.Devices()[0].State != "ok" || g.NextDeadline().Sub(now) != time.Second {
		t.Fatalf("after recovery: %+v %+v next %v", r, g.Devices(), g.NextDeadline().Sub(now))
	}
	if diff := cmp.Diff([]Event{{"m1", "reachable again"}}, r.Events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func scaleDown(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d / time.Second
	}
	return out
}

func TestDesiredWrites(t *testing.T) {
	t.Parallel()
	g := New(Config{BackoffMin: time.Second})
	desired := props("setpoint", "22.5", "relay", "true", "temp", "3", "ghost", "1", "note", `"x"`)
	g.Configure([]api.DeviceSpec{meter("m1", 4, desired)}, t0)
	r := g.Ready()
	wantEvents := []Event{
		{"m1", "desired ghost = 1 not written: not in the model"},
		{"m1", `desired note = "x" not written: not writable`},
		{"m1", "desired temp = 3 not written: not writable"},
	}
	if diff := cmp.Diff(wantEvents, r.Events); diff != "" {
		t.Fatalf("refused writes (-want +got):\n%s", diff)
	}
	// Writes go before polls, one at a time, in name order.
	g.Tick(t0)
	op := g.Ready().Ops[0]
	if diff := cmp.Diff(&Write{Property: "relay", Table: "coil", Address: 3, Bit: true}, op.Write); diff != "" {
		t.Fatalf("first write (-want +got):\n%s", diff)
	}
	// Not reached: retried after the backoff.
	g.WriteDone("m1", op.ID, errors.New("i/o timeout"), t0)
	g.Tick(t0.Add(500 * time.Millisecond))
	if r := g.Ready(); len(r.Ops) != 0 {
		t.Fatalf("retried before the backoff: %+v", r.Ops)
	}
	now := t0.Add(time.Second)
	g.Tick(now)
	op = g.Ready().Ops[0]
	if op.Write == nil || op.Write.Property != "relay" {
		t.Fatalf("retry: %+v", op)
	}
	g.WriteDone("m1", op.ID, nil, now)
	g.Tick(now)
	op = g.Ready().Ops[0]
	if diff := cmp.Diff(&Write{Property: "setpoint", Table: "holding", Address: 10, Registers: []uint16{225}}, op.Write); diff != "" {
		t.Fatalf("second write (-want +got):\n%s", diff)
	}
	g.WriteDone("m1", op.ID, nil, now)
	// Then a poll at once reads the values back.
	g.Tick(now)
	if op := g.Ready().Ops; len(op) != 1 || op[0].Write != nil {
		t.Fatalf("after the writes: %+v, want a poll", op)
	}
	// The same version again writes nothing; a new one writes its values;
	// a value the device refuses is given up.
	g.Configure([]api.DeviceSpec{meter("m1", 4, desired)}, now)
	g.Configure([]api.DeviceSpec{meter("m1", 5, props("setpoint", "-1"))}, now)
	g.PollDone("m1", op.ID, answer(1, 1, true), nil, now) // an answer to nothing in flight: ignored
	s := g.Stats()
	if s.Writes != 2 || s.WriteFailures != 1 || s.WritesRefused != 3 {
		t.Fatalf("stats %+v", s)
	}
	// A value that does not fit the register is refused at once.
	g.Configure([]api.DeviceSpec{meter("m1", 6, props("setpoint", "5000"))}, now)
	if r := g.Ready(); len(r.Events) != 1 || r.Events[0].Message != "desired setpoint = 5000 not written: 5000 gives 50000, out of the range of int16" {
		t.Fatalf("events %+v", r.Events)
	}
}

func TestRefusedWrite(t *testing.T) {
	t.Parallel()
	g := New(Config{})
	g.Configure([]api.DeviceSpec{meter("m1", 1, props("setpoint", "1"))}, t0)
	g.Tick(t0)
	op := g.Ready().Ops[0]
	g.WriteDone("m1", op.ID, errors.New("connection reset"), t0)
	g.Ready()
	now := g.NextDeadline()
	g.Tick(now)
	op = g.Ready().Ops[0]
	// The device answers, with a refusal: reachable again, the write given up.
	g.WriteDone("m1", op.ID, &Refused{Reason: "illegal data value"}, now)
	if st := g.Devices()[0]; st.State != "ok" {
		t.Fatalf("after a refusal the device is %+v, want ok", st)
	}
	g.Tick(now)
	r := g.Ready()
	if len(r.Ops) != 1 || r.Ops[0].Write != nil {
		t.Fatalf("after a refusal: %+v, want a poll", r.Ops)
	}
	if diff := cmp.Diff([]Event{{"m1", "reachable again"}, {"m1", "desired setpoint not written: refused by the device: illegal data value"}}, r.Events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestConfigureChanges(t *testing.T) {
	t.Parallel()
	g := New(Config{MaxDevices: 2})
	mq := api.DeviceSpec{Name: "t1", Model: "thermo", Properties: []api.Property{{Name: "temp", Type: "int"}}}
	g.Configure([]api.DeviceSpec{meter("m2", 0, nil), meter("m1", 0, nil), mq}, t0)
	r := g.Ready()
	if diff := cmp.Diff([]Event{{"t1", "refused: the gateway serves at most 2 devices"}}, r.Events); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	g.Tick(t0)
	if ops := g.Ready().Ops; len(ops) != 2 || ops[0].Device != "m1" || ops[1].Device != "m2" {
		t.Fatalf("ops %+v", ops)
	}
	// m2's endpoint changes: its connection is closed and it starts over
	// (its op in flight forgotten); m1 goes away.
	m2 := meter("m2", 0, nil)
	m2.Modbus.Address = "10.0.0.9:502"
	bad := meter("m3", 0, nil)
	bad.Properties[0].Modbus.Type = "int12"
	g.Configure([]api.DeviceSpec{m2, bad}, t0)
	r = g.Ready()
	if diff := cmp.Diff([]string{"m2", "m1"}, r.Close); diff != "" {
		t.Fatalf("closed (-want +got):\n%s", diff)
	}
	if len(r.Events) != 1 || r.Events[0].Device != "m3" {
		t.Fatalf("events %+v", r.Events)
	}
	g.Tick(t0)
	if ops := g.Ready().Ops; len(ops) != 1 || ops[0].Device != "m2" || ops[0].Endpoint.Address != "10.0.0.9:502" {
		t.Fatalf("ops %+v", ops)
	}
	if diff := cmp.Diff([]api.DeviceState{{Name: "m2", State: "connecting"},
		{Name: "m3", State: "invalid", Reason: `model: properties[0].modbus: type "int12": bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string`}}, g.Devices()); diff != "" {
		t.Fatalf("devices (-want +got):\n%s", diff)
	}
}

func TestMQTTReports(t *testing.T) {
	t.Parallel()
	g := New(Config{MaxReports: 2})
	mq := api.DeviceSpec{Name: "t1", Model: "thermo", Properties: []api.Property{{Name: "temp", Type: "int"}, {Name: "on", Type: "bool"}}}
	g.Configure([]api.DeviceSpec{mq}, t0)
	g.MQTTReport("t1", []byte(`{"temp": 21, "on": "yes", "extra": 1}`))
	g.MQTTReport("t1", []byte(`[1,2]`))
	g.MQTTReport("t1", []byte(`{"on": 3}`))
	g.MQTTReport("Bad/Name", []byte(`{"temp": 1}`))
	g.MQTTReport("later", []byte(`{"anything": 1}`)) // not known here yet: the cloud checks
	g.MQTTReport("t1", []byte(`{"temp": 22}`))
	r := g.Ready()
	want := []api.DeviceReport{{Device: "later", Props: props("anything", "1")}, {Device: "t1", Props: props("temp", "22")}}
	if diff := cmp.Diff(want, r.Reports); diff != "" {
		t.Fatalf("reports (-want +got):\n%s", diff)
	}
	s := g.Stats()
	if s.MQTTReports != 6 || s.MQTTRefused != 3 || s.MQTTPropsDropped != 3 || s.ReportsDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
}
