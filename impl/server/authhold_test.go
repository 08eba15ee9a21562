package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

type denyAll struct{}

func (denyAll) Authenticate(*broker.AuthRequest) broker.AuthResult {
	return broker.AuthResult{Code: packet.BadUserNameOrPassword}
}

// TestThrottledRefusalIsHeld: once its source is throttled (by this very
// failure or before), a CONNECT's refusal comes after the guard's refusal
// delay, and the guard's counters are in /metrics.
func TestThrottledRefusalIsHeld(t *testing.T) {
	t.Parallel()
	o := auth.DefaultGuardOptions(env.Real().Clock, 2)
	o.FreeFailures, o.RefusalDelay = 1, 300*time.Millisecond
	g, err := auth.NewGuard(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(ListenerConfig{Name: "tcp", Type: TCP, Addr: "127.0.0.1:0"})
	cfg.Broker.Authenticator = g.Authenticator(denyAll{})
	cfg.AuthGuard = g
	cfg.AdminAddr = "127.0.0.1:0"
	s := start(t, cfg)
	try := func() (packet.ReasonCode, time.Duration) {
		c, err := net.Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		began := time.Now()
		return mqttConnect(t, c, packet.V5, "x").ReasonCode, time.Since(began)
	}
	if code, took := try(); code != packet.BadUserNameOrPassword || took >= o.RefusalDelay {
		t.Errorf("first failure: %v after %v, want 0x86 at once", code, took)
	}
	if code, took := try(); code != packet.BadUserNameOrPassword || took < o.RefusalDelay {
		t.Errorf("the failure that starts the throttle: %v after %v, want 0x86 after at least %v", code, took, o.RefusalDelay)
	}
	if code, took := try(); code != packet.ConnectionRateExceeded || took < o.RefusalDelay {
		t.Errorf("throttled: %v after %v, want 0x9F after at least %v", code, took, o.RefusalDelay)
	}
	_, body := apiDo(t, "GET", "http://"+s.Addr("admin").String()+"/metrics", "", "")
	for _, want := range []string{
		`skybridge_auth_refused_total{reason="throttled"} 1`,
		`skybridge_auth_throttles_started_total{key="source"} 1`,
		`skybridge_auth_verifications_total 0`, // denyAll is not behind Bounded
		`skybridge_auth_refusals_held_total 2`,
		`skybridge_auth_tracked{key="source"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(body, "skybridge_auth"))
		}
	}
}
