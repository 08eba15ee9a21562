package main

import (
	"encoding/xml"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

func TestParseScenario(t *testing.T) {
	t.Parallel()
	base := func(s Scenario) Scenario {
		if s.Inflight == 0 {
			s.Inflight = 100
		}
		if s.Version == 0 {
			s.Version = packet.V311
		}
		return s
	}
	ok := []struct {
		name string
		want Scenario
	}{
		{"p2p-1-1-q0-16B", Scenario{Kind: "p2p", Pubs: 1, Subs: 1, Size: 16}},
		{"p2p-1-1-q1-16B-if100", Scenario{Kind: "p2p", Pubs: 1, Subs: 1, QoS: 1, Size: 16, Inflight: 100}},
		{"p2p-10-10-q0-16B-r50k", Scenario{Kind: "p2p", Pubs: 10, Subs: 10, Size: 16, Rate: 50000}},
		{"fanin-100-1-q2-1KB-if20-v5", Scenario{Kind: "fanin", Pubs: 100, Subs: 1, QoS: 2, Size: 1024, Inflight: 20, Version: packet.V5}},
		{"share-100-4-q1-16", Scenario{Kind: "share", Pubs: 100, Subs: 4, QoS: 1, Size: 16}},
		{"fanout-1-100-q0-64KB", Scenario{Kind: "fanout", Pubs: 1, Subs: 100, Size: 64 << 10}},
		{"persist-10-10-q1-16B-n1000", Scenario{Kind: "persist", Pubs: 10, Subs: 10, QoS: 1, Size: 16, Messages: 1000}},
		{"persist-1-1-q2-16B-n5k", Scenario{Kind: "persist", Pubs: 1, Subs: 1, QoS: 2, Size: 16, Messages: 5000}},
		{"connstorm-10000", Scenario{Kind: "connstorm", N: 10000, Size: 16}},
		{"idle-20000-v5", Scenario{Kind: "idle", N: 20000, Size: 16, Version: packet.V5}},
		{"idle-250000-ka60", Scenario{Kind: "idle", N: 250000, Size: 16, KeepAlive: 60}},
		{"idle-19500-ka60-pi5", Scenario{Kind: "idle", N: 19500, Size: 16, KeepAlive: 60, PingEvery: 5}},
		{"fanout-1-10000-q1-16B-r10", Scenario{Kind: "fanout", Pubs: 1, Subs: 10000, QoS: 1, Size: 16, Rate: 10}},
		{"retained-10000", Scenario{Kind: "retained", N: 10000, Size: 16}},
		{"retained-500-1KB", Scenario{Kind: "retained", N: 500, Size: 1024}},
	}
	for _, c := range ok {
		got, err := ParseScenario(c.name)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := base(c.want)
		want.Name = c.name
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
	}
	bad := []struct{ name, why string }{
		{"", "want KIND"},
		{"p2p", "want KIND"},
		{"warp-1-1-q0-16B", "unknown kind"},
		{"p2p-1-2-q0-16B", "as many subscribers"},
		{"fanin-5-2-q0-16B", "one subscriber"},
		{"fanout-2-5-q0-16B", "one publisher"},
		{"p2p-1-1-q3-16B", "QoS"},
		{"p2p-1-1-q0-16XB", "payload size"},
		{"p2p-0-0-q0-16B", "publishers"},
		{"p2p-1-1-q0-16B-if0", "inflight"},
		{"p2p-1-1-q0-16B-rfast", "rate"},
		{"p2p-1-1-q0-16B-zz", "unknown suffix"},
		{"persist-1-1-q1-16B", "needs -nMESSAGES"},
		{"connstorm-x", "count"},
		{"idle-100-ka0", "keep alive"},
		{"idle-100-ka70000", "keep alive"},
		{"p2p-1-1-q0-16B-ka60", "for idle-N only"},
		{"connstorm-100-ka60", "for idle-N only"},
		{"idle-100-pi5", "needs -kaS"},
		{"idle-100-ka10-pi20", "P <= S"},
		{"idle-100-ka10-pix", "ping interval"},
		{"p2p-1-1", "want p2p-PUBS"},
	}
	for _, c := range bad {
		_, err := ParseScenario(c.name)
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%q: error %v, want one saying %q", c.name, err, c.why)
		}
	}
}

func TestProfilesParse(t *testing.T) {
	t.Parallel()
	for name, p := range profiles {
		if p.Rounds < 2 && name != "scale" {
			t.Errorf("profile %s: %d rounds, want several", name, p.Rounds)
		}
		for _, s := range p.Scenarios {
			if _, err := ParseScenario(s); err != nil {
				t.Errorf("profile %s: %v", name, err)
			}
		}
	}
	if err := listScenarios(io.Discard); err != nil {
		t.Error(err)
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	if got := expand("bench/%i/x/%i", 7); got != "bench/7/x/7" {
		t.Errorf("expand: %q", got)
	}
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5}, 5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing should be NaN")
	}
	for _, c := range []struct {
		v          float64
		unit, want string
	}{
		{1_234_567, "msg/s", "1.23M"}, {64_012, "msg/s", "64.0k"}, {6392, "conn/s", "6392"},
		{25_700, "bytes", "25.1 KiB"}, {735, "bytes", "735 B"}, {1006.59, "µs", "1007"}, {85.25, "µs", "85.2"},
		{math.NaN(), "msg/s", "—"},
	} {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	o := ClientOptions{Addr: "127.0.0.1:1883", SrcIPs: 3}
	var ips []string
	for i := 0; i < 4; i++ {
		ips = append(ips, o.localIP(i).String())
	}
	if d := cmp.Diff([]string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"}, ips); d != "" {
		t.Errorf("source addresses (-want +got):\n%s", d)
	}
	for _, addr := range []string{"10.0.0.1:1883", "broker:1883", "[::1]:1883"} {
		if ip := (&ClientOptions{Addr: addr, SrcIPs: 3}).localIP(1); ip != nil {
			t.Errorf("%s: source address %v for a non-IPv4-loopback broker", addr, ip)
		}
	}
	if ip := (&ClientOptions{Addr: "127.0.0.1:1", SrcIPs: 1}).localIP(5); ip != nil {
		t.Errorf("one source address should not bind, got %v", ip)
	}
}

// Connections spread over source addresses really come from them.
func TestSourceAddresses(t *testing.T) {
	t.Parallel()
	fb, err := startFakeBroker(false)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	o := ClientOptions{Addr: fb.Addr(), SrcIPs: 3, Timeout: 2 * time.Second}
	o.defaults()
	rec := NewRecorder()
	conns, err := connectMany(t.Context(), &o, rec, "c", 6, true, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(conns, rec)
	seen := map[string]bool{}
	for _, c := range conns {
		seen[c.nc.LocalAddr().(*net.TCPAddr).IP.String()] = true
	}
	if len(seen) != 3 {
		t.Errorf("connections came from %v, want 3 addresses", seen)
	}
}

func sampleComparison() *Comparison {
	c := &Comparison{Profile: "quick", Rounds: 3, Complete: true, Machine: Machine{CPU: "Test CPU", Cores: 2},
		Brokers: []BrokerInfo{{Name: "skybridge"}, {Name: "mosquitto"}, {Name: "nats"}}}
	add := func(scen, broker string, ok bool, primary float64, lat *Latency) {
		r := &Result{Scenario: scen, Broker: broker, OK: ok, Primary: primary, Latency: lat}
		if !ok {
			r.Error = "broker reset the connection"
		}
		c.Runs = append(c.Runs, r)
	}
	for round := 0; round < 3; round++ {
		f := float64(round)
		add("p2p-1-1-q0-16B", "skybridge", true, 1_000_000+f, &Latency{P50: 10, P99: 20, P999: 30})
		add("p2p-1-1-q0-16B", "mosquitto", true, 100_000+f, &Latency{P50: 100, P99: 200, P999: 300})
		add("p2p-1-1-q0-16B", "nats", true, 800_000+f, &Latency{P50: 20, P99: 40, P999: 60})
		add("p2p-1-1-q2-16B-if100", "skybridge", true, 200_000, nil)
		add("p2p-1-1-q2-16B-if100", "mosquitto", true, 20_000, nil)
		add("p2p-1-1-q2-16B-if100", "nats", false, 0, nil)
		add("p2p-10-10-q0-16B-r50k", "skybridge", true, 20, &Latency{P50: 10, P99: 20, P999: 30})
		add("p2p-10-10-q0-16B-r50k", "mosquitto", true, 200, &Latency{P50: 100, P99: 200, P999: 300})
		add("p2p-10-10-q0-16B-r50k", "nats", true, 40+f, &Latency{P50: 20, P99: 40 + f, P999: 60})
		add("idle-5000", "skybridge", true, 3000+f, nil)
		add("idle-5000", "mosquitto", true, 700, nil)
		add("idle-5000", "nats", true, 25000, nil)
	}
	var scen []Scenario
	for _, n := range []string{"p2p-1-1-q0-16B", "p2p-1-1-q2-16B-if100", "p2p-10-10-q0-16B-r50k", "idle-5000"} {
		s, _ := ParseScenario(n)
		scen = append(scen, s)
	}
	kinds := []*brokerKind{{Name: "skybridge"}, {Name: "mosquitto"}, {Name: "nats"}}
	c.Summary = summarize3(c, scen, kinds)
	c.Goals = evaluateGoals(c.Summary)
	return c
}

func TestSummaryAndGoals(t *testing.T) {
	t.Parallel()
	c := sampleComparison()
	s := c.Summary[0]
	if s.Median["skybridge"] != 1_000_001 || s.Ratio["mosquitto"] != 10 || s.Ratio["nats"] != 1.25 {
		t.Errorf("summary %+v", s)
	}
	if len(s.P99) != 0 {
		t.Errorf("a saturating QoS 0 run has no meaningful latency, got %v", s.P99)
	}
	if l := c.Summary[2]; l.P99["nats"] != 41 || l.Ratio["nats"] != 0.49 {
		t.Errorf("latency summary %+v", l)
	}
	if f := c.Summary[1].Failures["nats"]; !strings.Contains(f, "reset") {
		t.Errorf("failure not kept: %q", f)
	}
	got := map[string]string{}
	for _, g := range c.Goals {
		got[g.Scenario] = g.Met
	}
	want := map[string]string{"p2p-1-1-q0-16B": "yes", "p2p-1-1-q1-16B-if100": "n/a", "p2p-10-10-q0-16B-r50k": "yes",
		"idle-5000": "yes", "connstorm-2000": "n/a"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("goals (-want +got):\n%s", d)
	}
}

func TestReportRendering(t *testing.T) {
	t.Parallel()
	c := sampleComparison()
	c.Runs = append(c.Runs, &Result{Scenario: "idle-1000-ka60", Broker: "skybridge", Round: 1, OK: true, Connections: 1000,
		DurationS: 0.5, ConnectRate: 2000, RSSBefore: 1 << 20, RSSPerConn: 1800,
		KeepAlive: &KeepAlive{KeepAliveS: 60, Pings: 1000, WindowS: 60, PingRate: 17, BrokerCPUPct: 1.5, IdleCPUPct: 0.5,
			CPUPerPingUS: 900, NetCPUPerPingUS: 600, RSSAfter: 1<<20 + 2_000_000, Latency: &Latency{P50: 80, P99: 450}}})
	md := markdownReport(c, "bench/results/x.json")
	for _, want := range []string{"| `p2p-1-1-q0-16B` |", "10.00x", "failed [1]", "broker reset the connection", "Figures from `bench/results/x.json`", "Goals:",
		"| `idle-1000-ka60` | skybridge | 1 | 1000 | 0.5 | 2000 | 1800 B | 2000 B | 0.5% | 17 | 1.5% | 900.0 (600.0) | 80.0 / 450 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for name, doc := range map[string]string{"scenarios": scenariosSVG(c), "latency": latencySVG(c)} {
		d := xml.NewDecoder(strings.NewReader(doc))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("%s SVG is not well-formed: %v", name, err)
				break
			}
		}
	}
}
