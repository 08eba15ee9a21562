package sim

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExplore(t *testing.T) {
	if os.Getenv("SIM_EXPLORE") == "" {
		t.Skip()
	}
	seed, _ := strconv.ParseUint(os.Getenv("SIM_SEED"), 10, 64)
	d, _ := time.ParseDuration(os.Getenv("SIM_DUR"))
	f, _ := ParseFaults(os.Getenv("SIM_FAULTS"))
	if e, err := time.ParseDuration(os.Getenv("SIM_EVERY")); err == nil {
		f.Every = e
	}
	sc := Standard(d, 50, f)
	if q, err := time.ParseDuration(os.Getenv("SIM_QUIESCE")); err == nil {
		sc.Quiesce = q
	}
	sc.Broker.Durable = os.Getenv("SIM_STORAGE") != "memory"
	if b, ok := ParseBugs(os.Getenv("SIM_BUGS")); ok {
		sc.Bugs = b
	}
	if os.Getenv("SIM_DEBUG") != "" {
		sc.Debug = func(s string) { t.Log(s) }
	}
	start := time.Now()
	r := Run(sc, seed)
	t.Logf("real %v virtual %v events %d steps %d msgs %d deliveries %d faults %+v checks %d excused %+v",
		time.Since(start), r.Virtual, r.Events, r.Steps, r.Messages, r.Deliveries, r.Faults, r.ChecksTotal(), r.Excused)
	t.Logf("checked %v", r.Checked)
	t.Logf("runtime %+v net %+v broker in %d out %d dropped %d", r.Runtime, r.Net, r.BrokerIn, r.BrokerOut, r.BrokerDropped)
	if r.Failure != nil {
		for _, l := range r.Tail {
			t.Log(l)
		}
		if r.Failure.HTML != nil {
			os.WriteFile("/tmp/sim-failure.html", r.Failure.HTML, 0o644)
		}
		t.Fatalf("%s: %s at %v", r.Failure.Invariant, r.Failure.Detail, r.Failure.At)
	}
}

func TestExploreLinz(t *testing.T) {
	if os.Getenv("SIM_EXPLORE") == "" {
		t.Skip()
	}
	seed, _ := strconv.ParseUint(os.Getenv("SIM_SEED"), 10, 64)
	d, _ := time.ParseDuration(os.Getenv("SIM_DUR"))
	f, _ := ParseFaults(os.Getenv("SIM_FAULTS"))
	sc := Standard(d, 50, f)
	sc.Checks.Porcupine = false
	sc.Debug = func(s string) {
		if strings.Contains(s, "subscriptions of") {
			t.Log(s)
		}
	}
	w := build(&sc, seed)
	w.Sim.Run(Epoch.Add(sc.Duration))
	w.quiesce()
	w.Sim.Run(Epoch.Add(sc.Duration + sc.Quiesce))
	w.Oracle.finish()
	s := time.Now()
	w.Oracle.checkRetainedLinearizable()
	t.Logf("retained %v", time.Since(s))
	s = time.Now()
	w.Oracle.checkSubscriptionsLinearizable()
	t.Logf("subs %v", time.Since(s))
	if w.Oracle.Failure != nil {
		t.Log(w.Oracle.Failure.Detail)
	}
}
