package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

var guardT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// verifier stands for the password file: "right" is the password, "block"
// waits until its client id's gate is closed; it counts its
// verifications (the hashes a guard must spare) and their order.
type verifier struct {
	mu    sync.Mutex
	calls int
	order []string
	gates map[string]chan struct{}
}

func (v *verifier) Decide(req *broker.AuthRequest) (Identity, bool) {
	v.mu.Lock()
	v.calls++
	v.order = append(v.order, req.ClientID)
	gate := v.gates[req.ClientID]
	v.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if string(req.Password) == "right" {
		return accepted("acme", "alice"), true
	}
	return refused(packet.BadUserNameOrPassword), true
}

func (v *verifier) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

func guardReq(id, remote, user, pw string) *broker.AuthRequest {
	return &broker.AuthRequest{ClientID: id, Remote: remote, Username: user, HasUser: user != "", Password: []byte(pw),
		Listener: "tcp", DefaultTenant: "default"}
}

// newGuarded is the production shape: the guard around a chain whose
// expensive member runs on the guard's workers.
func newGuarded(t *testing.T, o GuardOptions) (*Guard, broker.Authenticator, *verifier, *[]event.Event) {
	t.Helper()
	var mu sync.Mutex
	events := &[]event.Event{}
	o.Events = event.SinkFunc(func(e event.Event) {
		mu.Lock()
		*events = append(*events, e)
		mu.Unlock()
	})
	g, err := NewGuard(o)
	if err != nil {
		t.Fatal(err)
	}
	v := &verifier{gates: map[string]chan struct{}{}}
	return g, g.Authenticator(&Chain{Deciders: []Decider{g.Bounded(v)}}), v, events
}

// TestGuardThrottleWindows: after FreeFailures failures, attempts within
// a window that doubles with each further failure are refused 0x9F
// without a verification.
func TestGuardThrottleWindows(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 2)
	o.FreeFailures, o.Delay, o.MaxDelay, o.BanAfter = 3, time.Second, 8*time.Second, 0
	_, a, v, events := newGuarded(t, o)
	type step struct {
		Advance time.Duration
		Code    packet.ReasonCode
		Hashed  bool
	}
	fail := packet.BadUserNameOrPassword
	rate := packet.ConnectionRateExceeded
	steps := []step{
		{0, fail, true}, {0, fail, true}, {0, fail, true}, // free failures
		{0, fail, true}, // the 4th: a 1 s window starts
		{0, rate, false}, {999 * time.Millisecond, rate, false},
		{time.Millisecond, fail, true}, // window over: hashed, failed, 2 s window
		{1999 * time.Millisecond, rate, false},
		{time.Millisecond, fail, true}, // 4 s
		{3 * time.Second, rate, false},
		{time.Second, fail, true}, // 8 s
		{7 * time.Second, rate, false},
		{time.Second, fail, true}, // capped at 8 s
		{7 * time.Second, rate, false},
		{time.Second, fail, true},
	}
	var got []step
	for _, s := range steps {
		clock.Advance(s.Advance)
		before := v.count()
		r := a.Authenticate(guardReq("c", "192.0.2.7:4000", "acme/alice", "wrong"))
		got = append(got, step{s.Advance, r.Code, v.count() > before})
	}
	if d := cmp.Diff(steps, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	var what []string
	for _, e := range *events {
		what = append(what, fmt.Sprintf("%s %s %#x %s", e.Type, e.Detail, byte(e.Reason), e.Remote))
	}
	want := []string{"throttled auth_source 0x9f 192.0.2.7:4000", "throttled auth_user 0x9f 192.0.2.7:4000"}
	if d := cmp.Diff(want, what); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

// TestGuardUserThrottle: failures against one user from many sources
// throttle the user for sources that failed, not for a source without
// failures; a success resets the user.
func TestGuardUserThrottle(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 2)
	o.FreeFailures = 3
	g, a, v, _ := newGuarded(t, o)
	for i := range 4 {
		if r := a.Authenticate(guardReq("x", fmt.Sprintf("198.51.100.%d:1", i), "alice", "wrong")); r.Code != packet.BadUserNameOrPassword {
			t.Fatalf("failure %d: %v", i, r.Code)
		}
	}
	// A source that failed once meets the user's throttle (the user name
	// without a tenant is the listener's default tenant's).
	if r := a.Authenticate(guardReq("x", "198.51.100.0:2", "default/alice", "wrong")); r.Code != packet.ConnectionRateExceeded {
		t.Fatalf("failed source, throttled user: %v, want 0x9F", r.Code)
	}
	// A clean source is not kept out by the others' storm.
	before := v.count()
	if r := a.Authenticate(guardReq("x", "203.0.113.9:5", "alice", "right")); r.Code != packet.Success || v.count() != before+1 {
		t.Fatalf("clean source: %v", r.Code)
	}
	// The success reset the user: the failed source may try again.
	if r := a.Authenticate(guardReq("x", "198.51.100.0:3", "alice", "right")); r.Code != packet.Success {
		t.Fatalf("after the user's success: %v", r.Code)
	}
	if st := g.Stats(); st.UserThrottles != 1 || st.SourceThrottles != 0 || st.Throttled != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestGuardBan: a source whose failures and refused attempts reach
// BanAfter is refused 0x8A for BanFor, then starts over.
func TestGuardBan(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 2)
	o.FreeFailures, o.BanAfter, o.BanFor = 2, 6, time.Minute
	g, a, v, events := newGuarded(t, o)
	var codes []packet.ReasonCode
	for range 8 {
		codes = append(codes, a.Authenticate(guardReq("m", "192.0.2.66:1", "", "wrong")).Code)
	}
	f, r, b := packet.BadUserNameOrPassword, packet.ConnectionRateExceeded, packet.Banned
	if d := cmp.Diff([]packet.ReasonCode{f, f, f, r, r, b, b, b}, codes); d != "" {
		t.Errorf("codes (-want +got):\n%s", d)
	}
	if v.count() != 3 {
		t.Errorf("verifications = %d, want 3 (none once throttled)", v.count())
	}
	clock.Advance(time.Minute - time.Millisecond)
	if c := a.Authenticate(guardReq("m", "192.0.2.66:1", "", "wrong")).Code; c != b {
		t.Errorf("within the ban: %v", c)
	}
	clock.Advance(o.Forget) // ban over, nothing failed for Forget: forgotten
	if c := a.Authenticate(guardReq("m", "192.0.2.66:1", "", "wrong")).Code; c != f {
		t.Errorf("after the ban: %v, want a verification", c)
	}
	if st := g.Stats(); st.Bans != 1 || st.Banned != 4 {
		t.Errorf("stats %+v", st)
	}
	last := (*events)[len(*events)-1]
	if last.Detail != "auth_ban" || last.Reason != packet.Banned || last.Remote != "192.0.2.66:1" {
		t.Errorf("ban event %+v", last)
	}
}

func TestSourceOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:1883", "127.0.0.1"},
		{"192.0.2.255:65535", "192.0.2.255"},
		{"[::ffff:10.0.0.1]:3", "10.0.0.1"},
		{"[2001:db8:1:2:aaaa::1]:5", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:6", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:7", "fe80::/64"},
		{"sim-host-3:17", "sim-host-3"},
		{"", ""},
	} {
		if got := SourceOf(tc.in); got != tc.want {
			t.Errorf("SourceOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSourceOfAllocs: an IPv4 source is part of the remote address, not a
// string of its own per CONNECT (not parallel: AllocsPerRun).
func TestSourceOfAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = SourceOf("192.0.2.17:65535") }); n != 0 {
		t.Errorf("SourceOf of an IPv4 address allocates %v times, want 0", n)
	}
}

// TestGuardTrackerBound: the trackers keep MaxTracked records each and
// count what they evict.
func TestGuardTrackerBound(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 1)
	o.MaxTracked = 3
	g, a, _, _ := newGuarded(t, o)
	for i := range 5 {
		a.Authenticate(guardReq("c", fmt.Sprintf("192.0.2.%d:1", i), fmt.Sprintf("acme/u%d", i), "wrong"))
	}
	if st := g.Stats(); st.Sources != 3 || st.Users != 3 || st.Evicted != 4 {
		t.Errorf("stats %+v, want 3 sources, 3 users, 4 evictions", st)
	}
}

// TestGuardOneThreadNeverWaits: driven from one goroutine, as in the
// simulator, the guard never queues (and so never blocks).
func TestGuardOneThreadNeverWaits(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	g, a, _, _ := newGuarded(t, DefaultGuardOptions(clock, 1))
	for i := range 500 {
		a.Authenticate(guardReq("c", fmt.Sprintf("192.0.2.%d:1", i%7), "acme/alice", []string{"wrong", "right"}[i%2]))
		clock.Advance(100 * time.Millisecond)
	}
	if st := g.Stats(); st.Waited != 0 || st.Running != 0 || st.Verifications == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestGuardPool: at most Workers verifications at once and PerSource per
// source; waiters of sources without failures go first, and one of a
// failing source starts only while no clean source's runs; a full queue
// refuses 0x89, except that a clean source takes the place of a failing
// one's newest waiter.
func TestGuardPool(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 2)
	o.PerSource, o.Queue = 1, 3
	g, a, v, _ := newGuarded(t, o)
	const srcA, srcB, srcC, srcD = "192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1", "192.0.2.4:1"
	// A has failed once: not throttled, but no longer clean.
	a.Authenticate(guardReq("a0", srcA, "acme/a", "wrong"))
	for _, id := range []string{"a1", "a2", "a3", "b1", "c1", "d1"} {
		v.gates[id] = make(chan struct{})
	}
	var wg sync.WaitGroup
	results := map[string]packet.ReasonCode{}
	var rmu sync.Mutex
	try := func(id, remote string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a.Authenticate(guardReq(id, remote, "acme/"+id, "right"))
			rmu.Lock()
			results[id] = r.Code
			rmu.Unlock()
		}()
	}
	waitFor := func(running, waiting int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := g.Stats()
			if st.Running == running && st.Waiting == waiting {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v, want %d running and %d waiting", st, running, waiting)
			}
			time.Sleep(time.Millisecond) // polling with a deadline
		}
	}
	result := func(id string) packet.ReasonCode {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rmu.Lock()
			c, ok := results[id]
			rmu.Unlock()
			if ok {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s got no answer", id)
			}
			time.Sleep(time.Millisecond)
		}
	}
	try("a1", srcA)
	waitFor(1, 0)
	try("b1", srcB)
	waitFor(2, 0)
	try("a2", srcA)
	waitFor(2, 1)
	try("a3", srcA)
	waitFor(2, 2)
	try("c1", srcC)
	waitFor(2, 3)
	// Full: a failing source is refused at once ...
	if c := a.Authenticate(guardReq("a4", srcA, "acme/a4", "right")).Code; c != packet.ServerBusy {
		t.Fatalf("a4 with the queue full: %v, want 0x89", c)
	}
	// ... a clean one takes the place of the failing source's newest waiter.
	try("d1", srcD)
	if c := result("a3"); c != packet.ServerBusy {
		t.Fatalf("a3, turned away for d1: %v, want 0x89", c)
	}
	waitFor(2, 3)
	// B's worker goes to c1 (clean), not to a2 (earlier, but failing).
	close(v.gates["b1"])
	waitFor(2, 2)
	// A's worker goes to d1.
	close(v.gates["a1"])
	waitFor(2, 1)
	// a2's source has failed: it waits until no clean source's runs.
	close(v.gates["c1"])
	waitFor(1, 1)
	close(v.gates["d1"])
	waitFor(1, 0)
	close(v.gates["a2"])
	wg.Wait()
	want := []string{"a0", "a1", "b1", "c1", "d1", "a2"}
	if d := cmp.Diff(want, v.order); d != "" {
		t.Errorf("verification order (-want +got):\n%s", d)
	}
	for _, id := range []string{"a1", "b1", "c1", "d1", "a2"} {
		if results[id] != packet.Success {
			t.Errorf("%s: %v", id, results[id])
		}
	}
	if st := g.Stats(); st.Busy != 2 || st.Running != 0 || st.Waiting != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestGuardRecheckAfterWait: an attempt that waited for a worker while its
// source got throttled is refused without a verification.
func TestGuardRecheckAfterWait(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 1)
	o.FreeFailures = 0 // the first failure throttles
	g, a, v, _ := newGuarded(t, o)
	v.gates["first"] = make(chan struct{})
	done := make(chan packet.ReasonCode, 2)
	go func() { done <- a.Authenticate(guardReq("first", "192.0.2.9:1", "acme/x", "wrong")).Code }()
	for g.Stats().Running != 1 {
		time.Sleep(time.Millisecond)
	}
	go func() { done <- a.Authenticate(guardReq("second", "192.0.2.9:2", "acme/x", "wrong")).Code }()
	for g.Stats().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	close(v.gates["first"])
	got := []packet.ReasonCode{<-done, <-done}
	if d := cmp.Diff([]packet.ReasonCode{packet.BadUserNameOrPassword, packet.ConnectionRateExceeded}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if v.count() != 1 {
		t.Errorf("verifications = %d, want 1", v.count())
	}
}

// twoStep is an exchange that wants two steps; the second is the proof.
type twoStep struct {
	steps int
	ok    bool
}

func (x *twoStep) Step(data []byte) ([]byte, bool, packet.ReasonCode) {
	x.steps++
	if x.steps == 1 {
		return []byte("challenge"), false, packet.Success
	}
	x.ok = string(data) == "proof"
	if !x.ok {
		return nil, false, packet.BadUserNameOrPassword
	}
	return []byte("done"), true, packet.Success
}

func (x *twoStep) Result() broker.AuthResult {
	if !x.ok {
		return broker.AuthResult{Code: packet.BadUserNameOrPassword}
	}
	return broker.AuthResult{Tenant: "acme", User: "alice"}
}

type twoStepMethod struct{ begun int }

func (m *twoStepMethod) Begin(method string, _ *broker.AuthRequest) (broker.Exchange, bool) {
	m.begun++
	return &twoStep{}, method == "TWO"
}

// TestGuardEnhanced: failed exchanges count like failed passwords, and a
// throttled source's exchange is refused at its first step.
func TestGuardEnhanced(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 1)
	o.FreeFailures = 1
	g, err := NewGuard(o)
	if err != nil {
		t.Fatal(err)
	}
	ea := g.Enhanced(&twoStepMethod{})
	run := func(remote, proof string) (packet.ReasonCode, bool) {
		ex, ok := ea.Begin("TWO", guardReq("c", remote, "acme/alice", ""))
		if !ok {
			t.Fatal("method not offered")
		}
		if _, done, code := ex.Step(nil); done || code.IsError() {
			return code, done
		}
		_, done, code := ex.Step([]byte(proof))
		if done && ex.Result().Tenant != "acme" {
			t.Errorf("result %+v", ex.Result())
		}
		return code, done
	}
	if code, done := run("192.0.2.5:1", "proof"); code != packet.Success || !done {
		t.Fatalf("good proof: %v %v", code, done)
	}
	for i, want := range []packet.ReasonCode{packet.BadUserNameOrPassword, packet.BadUserNameOrPassword, packet.ConnectionRateExceeded} {
		if code, _ := run("192.0.2.6:1", "wrong"); code != want {
			t.Errorf("bad proof %d: %v, want %v", i, code, want)
		}
	}
	if _, ok := ea.Begin("OTHER", guardReq("c", "192.0.2.5:1", "", "")); ok {
		t.Error("an unknown method was offered")
	}
}

func TestGuardOptionsValidated(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	for _, mod := range []func(*GuardOptions){
		func(o *GuardOptions) { o.Clock = nil },
		func(o *GuardOptions) { o.Workers = 0 },
		func(o *GuardOptions) { o.Delay = 0 },
		func(o *GuardOptions) { o.MaxDelay = o.Delay / 2 },
		func(o *GuardOptions) { o.Forget = o.MaxDelay / 2 },
		func(o *GuardOptions) { o.BanFor = 0 },
		func(o *GuardOptions) { o.MaxTracked = 0 },
		func(o *GuardOptions) { o.Queue = -1 },
	} {
		o := DefaultGuardOptions(clock, 2)
		mod(&o)
		if _, err := NewGuard(o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
}

// TestGuardFloodThrottlesAtFirstFailure: a source with more attempts
// waiting than there are workers is a flood, not a client retrying: its
// first failure throttles it, and its queued attempts hash nothing.
func TestGuardFloodThrottlesAtFirstFailure(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(guardT0)
	o := DefaultGuardOptions(clock, 1)
	o.FreeFailures = 5
	g, a, v, _ := newGuarded(t, o)
	v.gates["f0"] = make(chan struct{})
	done := make(chan packet.ReasonCode, 3)
	for i := range 3 {
		go func() {
			done <- a.Authenticate(guardReq(fmt.Sprintf("f%d", i), "192.0.2.50:1", "acme/x", "wrong")).Code
		}()
		for g.Stats().Running+g.Stats().Waiting != i+1 {
			time.Sleep(time.Millisecond) // polling until it is in
		}
	}
	close(v.gates["f0"])
	var got []packet.ReasonCode
	for range 3 {
		got = append(got, <-done)
	}
	want := []packet.ReasonCode{packet.BadUserNameOrPassword, packet.ConnectionRateExceeded, packet.ConnectionRateExceeded}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if st := g.Stats(); v.count() != 1 || st.SourceThrottles != 1 {
		t.Errorf("%d verifications, stats %+v; want 1 and a throttle", v.count(), st)
	}
}
