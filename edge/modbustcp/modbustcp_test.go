package modbustcp

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/gateway"
	"github.com/skybridge-mq/skybridge/edge/modbustcp/modbustest"
)

// rig drives the gateway core with the driver, as edge/service does.
type rig struct {
	mu      sync.Mutex
	g       *gateway.Gateway
	d       *Driver
	reports []api.DeviceReport
	events  []gateway.Event
}

func newRig(t *testing.T, cfg gateway.Config, dcfg Config) *rig {
	r := &rig{g: gateway.New(cfg)}
	dcfg.Done = func(op gateway.Op, res []gateway.ReadResult, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if op.Write != nil {
			r.g.WriteDone(op.Device, op.ID, err, time.Now())
		} else {
			r.g.PollDone(op.Device, op.ID, res, err, time.Now())
		}
	}
	r.d = New(dcfg)
	t.Cleanup(r.d.Shutdown)
	return r
}

// step ticks the core and carries out its Ready.
func (r *rig) step() {
	r.mu.Lock()
	r.g.Tick(time.Now())
	rd := r.g.Ready()
	r.reports = append(r.reports, rd.Reports...)
	r.events = append(r.events, rd.Events...)
	r.mu.Unlock()
	for _, c := range rd.Close {
		r.d.Close(c)
	}
	for _, op := range rd.Ops {
		r.d.Submit(op)
	}
}

func (r *rig) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.step()
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; reports %+v events %+v stats %+v", what, r.reports, r.events, r.g.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func (r *rig) latest(dev, prop string) string {
	for i := len(r.reports) - 1; i >= 0; i-- {
		if r.reports[i].Device == dev {
			if v, ok := r.reports[i].Props[prop]; ok {
				return string(v)
			}
		}
	}
	return ""
}

func model() []api.Property {
	return []api.Property{
		{Name: "temp", Type: "float", Modbus: &api.ModbusPoint{Table: "input", Address: 0, Type: "int16", Scale: 0.1}},
		{Name: "energy", Type: "int", Modbus: &api.ModbusPoint{Table: "input", Address: 1, Type: "uint32", WordOrder: "low"}},
		{Name: "setpoint", Type: "float", Writable: true, Modbus: &api.ModbusPoint{Table: "holding", Address: 10, Type: "float32"}},
		{Name: "limit", Type: "int", Writable: true, Modbus: &api.ModbusPoint{Table: "holding", Address: 12, Type: "uint16"}},
		{Name: "relay", Type: "bool", Writable: true, Modbus: &api.ModbusPoint{Table: "coil", Address: 3, Type: "bool"}},
		{Name: "broken", Type: "int", Modbus: &api.ModbusPoint{Table: "input", Address: 60001, Type: "uint16"}},
	}
}

func spec(name, addr string, unit uint8, version uint64, desired map[string]json.RawMessage) api.DeviceSpec {
	return api.DeviceSpec{Name: name, Model: "meter", Properties: model(), Desired: desired, DesiredVersion: version,
		Modbus: &api.ModbusEndpoint{Address: addr, Unit: unit, Poll: api.Duration(20 * time.Millisecond), Timeout: api.Duration(500 * time.Millisecond)}}
}

// TestAgainstServer: values read from a real Modbus TCP server (the
// library's), desired values written to it, a refused write, the server
// gone and back (reconnect after the backoff).
func TestAgainstServer(t *testing.T) {
	t.Parallel()
	srv, err := modbustest.Start(10)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	srv.SetInput(1, 0, 215, 0x1170, 0x0001) // temp 21.5; energy 0x00011170 = 70000, low word first
	srv.SetInput(2, 0, 0xfff6)              // unit 2: temp -1.0
	srv.RefuseWrites(1, 12)
	r := newRig(t, gateway.Config{BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, Config{Workers: 2})
	r.g.Configure([]api.DeviceSpec{spec("m1", srv.Addr(), 1, 0, nil), spec("m2", srv.Addr(), 2, 0, nil)}, time.Now())
	r.until(t, "the first values", func() bool { return r.latest("m1", "temp") != "" && r.latest("m2", "temp") != "" })
	got := map[string]string{"temp": r.latest("m1", "temp"), "energy": r.latest("m1", "energy"), "relay": r.latest("m1", "relay"),
		"setpoint": r.latest("m1", "setpoint"), "broken": r.latest("m1", "broken"), "m2.temp": r.latest("m2", "temp")}
	want := map[string]string{"temp": "21.5", "energy": "70000", "relay": "false", "setpoint": "0", "broken": "", "m2.temp": "-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first values (-want +got):\n%s", diff)
	}
	// A change on the device is reported at the next poll.
	srv.SetInput(1, 0, 230)
	r.until(t, "the change", func() bool { return r.latest("m1", "temp") == "23" })
	// Desired values are written, and read back.
	desired := map[string]json.RawMessage{"setpoint": json.RawMessage("19.25"), "relay": json.RawMessage("true"), "limit": json.RawMessage("7")}
	r.mu.Lock()
	r.g.Configure([]api.DeviceSpec{spec("m1", srv.Addr(), 1, 1, desired), spec("m2", srv.Addr(), 2, 0, nil)}, time.Now())
	r.mu.Unlock()
	r.until(t, "the desired values read back", func() bool {
		return r.latest("m1", "setpoint") == "19.25" && r.latest("m1", "relay") == "true"
	})
	if !srv.Coil(1, 3) || srv.Holding(1, 10) != 0x419a {
		t.Fatalf("device holds coil %v, register 10 %#x", srv.Coil(1, 3), srv.Holding(1, 10))
	}
	r.mu.Lock()
	s := r.g.Stats()
	events := r.events
	r.mu.Unlock()
	if s.Writes != 2 || s.WriteFailures != 1 || s.ReadErrors == 0 {
		t.Fatalf("stats %+v", s)
	}
	wantEvent := gateway.Event{Device: "m1", Message: "desired limit not written: refused by the device: illegal data value"}
	if !cmp.Equal(events[len(events)-1], wantEvent) && !containsEvent(events, wantEvent) {
		t.Fatalf("events %+v, want %+v", events, wantEvent)
	}

	// The server goes away: the devices fail and back off; it comes back
	// on the same port: they reconnect and report again.
	addr := srv.Addr()
	srv.Stop()
	r.until(t, "both devices failing", func() bool {
		d := r.g.Devices()
		return d[0].State == "failing" && d[1].State == "failing"
	})
	srv2, err := modbustest.StartAt(addr, 10)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer srv2.Stop()
	srv2.SetInput(1, 0, 99)
	r.until(t, "the devices back", func() bool {
		d := r.g.Devices()
		return r.latest("m1", "temp") == "9.9" && d[0].State == "ok" && d[1].State == "ok"
	})
	if st := r.d.Stats(); st.Dials < 4 { // two devices, each connected again
		t.Fatalf("driver stats %+v: want new connections after the failure", st)
	}
}

func containsEvent(evs []gateway.Event, e gateway.Event) bool {
	for _, x := range evs {
		if x == e {
			return true
		}
	}
	return false
}

// TestQueueFull: an operation that finds the queue full is answered at
// once as failed, and counted.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	var mu sync.Mutex
	var errs []error
	d := New(Config{Workers: 1, Queue: 1, Done: func(op gateway.Op, _ []gateway.ReadResult, err error) {
		if op.ID == 1 {
			<-block
		}
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	defer d.Shutdown()
	ep := api.ModbusEndpoint{Address: "127.0.0.1:1", Timeout: api.Duration(100 * time.Millisecond)}
	d.Submit(gateway.Op{ID: 1, Device: "a", Endpoint: ep, Reads: []gateway.Read{{Table: "holding", Count: 1}}})
	deadline := time.Now().Add(10 * time.Second)
	for len(d.jobs) != 0 { // the worker has taken op 1 (and blocks in Done)
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the first op")
		}
		time.Sleep(time.Millisecond)
	}
	d.Submit(gateway.Op{ID: 2, Device: "b", Endpoint: ep}) // queued
	d.Submit(gateway.Op{ID: 3, Device: "c", Endpoint: ep}) // full
	mu.Lock()
	if len(errs) != 1 || errs[0] != ErrQueueFull {
		t.Fatalf("answers %v, want one ErrQueueFull", errs)
	}
	mu.Unlock()
	close(block)
	if d.Stats().Dropped != 1 {
		t.Fatalf("stats %+v", d.Stats())
	}
}
