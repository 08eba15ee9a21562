package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// connectOnce dials addr from the local address from, sends a 5.0 CONNECT
// and returns the CONNACK's code and the time from the CONNECT's write to
// the CONNACK's arrival.
func connectOnce(addr, from, id, user, pw string, sent *atomic.Int64) (packet.ReasonCode, time.Duration, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	b, err := packet.Encode(&packet.Connect{Version: packet.V5, ClientID: []byte(id), CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pw)}, packet.V5)
	if err != nil {
		return 0, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	began := time.Now()
	if _, err := c.Write(b); err != nil {
		return 0, 0, err
	}
	if sent != nil {
		sent.Add(1)
	}
	p, err := packet.NewDecoder(c, packet.V5).Next()
	took := time.Since(began)
	if err != nil {
		return 0, took, err
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return 0, took, fmt.Errorf("got %s, want CONNACK", packet.Format(p))
	}
	return ack.ReasonCode, took, nil
}

// TestLegitimateConnectDuringPasswordStorm: 100 goroutines send wrong
// passwords (bcrypt at the default cost) from 127.0.0.2 as fast as the
// broker answers; a client with the right password from 127.0.0.1
// connects within 200 ms at the storm's start, once the storm is
// throttled, and once it is banned (issue 13 item 4: the auth limits with
// their default settings).
func TestLegitimateConnectDuringPasswordStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("a storm of bcrypt verifications")
	}
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", freeAddr(t)); err == nil {
		c.Close()
	} else if !strings.Contains(err.Error(), "refused") {
		t.Skipf("cannot dial from 127.0.0.2 on this host: %v", err)
	}
	dir := t.TempDir()
	hash, err := auth.HashPassword([]byte("pw-alice"), 0) // the default cost
	if err != nil {
		t.Fatal(err)
	}
	line, _ := auth.Line("acme", "alice", hash)
	pwFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "skybridge.yaml")
	if err := os.WriteFile(cfg, []byte(`
listeners:
  - {name: tcp, type: tcp, addr: "`+addr+`", allow_anonymous: false}
auth:
  password_file: `+pwFile+`
storage: {type: memory}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startWithConfig(t, cfg, addr, filepath.Join(dir, "data"))
	quiet := make([]time.Duration, 0, 3)
	for i := range 3 {
		if _, d, err := connectOnce(addr, "127.0.0.1", fmt.Sprintf("alice-quiet-%d", i), "acme/alice", "pw-alice", nil); err == nil {
			quiet = append(quiet, d.Round(100*time.Microsecond))
		}
	}
	t.Logf("before the storm: legitimate CONNECT→CONNACK %v", quiet)
	var attempts, sent atomic.Int64
	var byCode sync.Map // packet.ReasonCode -> *atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "acme/alice" // half the storm guesses alice's password,
			if i%2 == 1 {
				user = fmt.Sprintf("acme/u%d", i) // half other names
			}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := connectOnce(addr, "127.0.0.2", fmt.Sprintf("storm-%d", i), user, fmt.Sprintf("guess-%d", n), &sent)
				attempts.Add(1)
				if err != nil {
					continue
				}
				v, _ := byCode.LoadOrStore(code, &atomic.Int64{})
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	count := func(code packet.ReasonCode) int64 {
		if v, ok := byCode.Load(code); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("storm never reached %s: %d attempts", what, attempts.Load())
			}
			time.Sleep(5 * time.Millisecond) // polling the storm's progress
		}
	}
	// Three legitimate CONNECTs per phase, one after the other: the
	// median must be under 200 ms and none may take a second. The VM's two
	// cores are shared with other work, whose load alone can make one
	// bcrypt comparison take 150 ms: the median keeps one such moment from
	// deciding (a client queued behind the storm would be slow all three
	// times), and when the quiet broker's median is over 100 ms the bound
	// is twice that instead (the storm may not more than double it).
	slices.Sort(quiet)
	budget := 200 * time.Millisecond
	if len(quiet) == 3 && 2*quiet[1] > budget {
		budget = 2 * quiet[1]
		t.Logf("the machine is loaded (a quiet CONNECT takes %v): the bound is %v", quiet[1], budget)
	}
	phases := map[string][]time.Duration{}
	legit := func(phase string) {
		t.Helper()
		var took []time.Duration
		for i := range 3 {
			code, d, err := connectOnce(addr, "127.0.0.1", fmt.Sprintf("alice-%s-%d", phase, i), "acme/alice", "pw-alice", nil)
			if err != nil || code != packet.Success {
				t.Fatalf("%s: legitimate CONNECT: %v %v", phase, code, err)
			}
			took = append(took, d.Round(100*time.Microsecond))
		}
		phases[phase] = took
		t.Logf("%s: legitimate CONNECT→CONNACK %v (storm so far: %d CONNECTs sent; answers 0x86 %d, 0x9F %d, 0x8A %d, 0x89 %d)", phase, took,
			sent.Load(), count(packet.BadUserNameOrPassword), count(packet.ConnectionRateExceeded), count(packet.Banned), count(packet.ServerBusy))
		slices.Sort(took)
		if took[1] >= budget || took[2] >= time.Second {
			t.Errorf("%s: legitimate CONNECTs took %v during the storm, want a median under %v and none over 1 s", phase, took, budget)
		}
	}
	// At the storm's start: every storm goroutine has sent a wrong
	// password, which waits for a worker (one source: one worker), the
	// first of them being hashed.
	waitUntil("100 CONNECTs sent", func() bool { return sent.Load() >= 100 })
	waitUntil("the storm queued", func() bool { return metric(t, b, "skybridge_auth_verifications_waiting") >= 90 })
	legit("start") // the storm's first wrong passwords are being hashed
	waitUntil("a throttle", func() bool { return count(packet.ConnectionRateExceeded) > 0 })
	legit("throttled")
	waitUntil("bans", func() bool { return count(packet.Banned) > 100 })
	legit("banned")
	hashed := metric(t, b, "skybridge_auth_verifications_total")
	t.Logf("storm: %d CONNECTs sent, %v verifications in the broker", sent.Load(), hashed)
	if hashed > 50 {
		t.Errorf("%v verifications for a storm from one address, want the throttle to spare most", hashed)
	}
}
