package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/server"
)

// The smoke version of the harness: Skybridge in-process on a random port
// and a tiny run of the main scenario families, checking that messages
// arrive and that results are well-formed JSON. A few seconds in all.

func startSkybridge(t *testing.T) (addr string, stop func()) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listeners = []server.ListenerConfig{{Name: "tcp", Type: server.TCP, Addr: "127.0.0.1:0", DefaultTenant: "default"}}
	srv := server.New(cfg, broker.New(cfg.Broker, env.Real(), nil))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.Addr("tcp").String(), srv.Close
}

// checkJSON round-trips a result through JSON and checks the fields every
// consumer of the files reads.
func checkJSON(t *testing.T, res *Result, keys ...string) map[string]any {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("result is not valid JSON: %v\n%s", err, b)
	}
	for _, k := range append([]string{"command", "ok", "primary", "sent", "received", "errors"}, keys...) {
		if _, ok := m[k]; !ok {
			t.Errorf("result JSON lacks %q: %s", k, b)
		}
	}
	return m
}

func TestSmokeScenarios(t *testing.T) {
	addr, _ := startSkybridge(t)
	cases := []struct {
		name string
		// check is on top of: OK, JSON well-formed, primary > 0.
		check func(t *testing.T, r *Result)
	}{
		{"p2p-2-2-q0-16B", func(t *testing.T, r *Result) {
			// Saturating QoS 0: the broker may drop what it cannot forward.
			if r.Received == 0 || r.Received > r.Sent || r.RecvRate <= 0 {
				t.Errorf("received %d of %d at %v msg/s", r.Received, r.Sent, r.RecvRate)
			}
		}},
		{"fanin-4-1-q1-16B-if10", func(t *testing.T, r *Result) {
			if r.Lost != 0 || r.Received != r.Sent || r.Acked != r.Sent {
				t.Errorf("sent %d acked %d received %d lost %d", r.Sent, r.Acked, r.Received, r.Lost)
			}
			if r.Latency == nil || r.Latency.Count == 0 || r.Latency.P99 <= 0 {
				t.Errorf("no latency: %+v", r.Latency)
			}
		}},
		{"fanout-1-3-q2-32B-v5", func(t *testing.T, r *Result) {
			if r.Expected != 3*r.Sent || r.Received != r.Expected {
				t.Errorf("sent %d expected %d received %d", r.Sent, r.Expected, r.Received)
			}
		}},
		{"share-3-2-q1-16B", func(t *testing.T, r *Result) {
			if r.Received != r.Sent {
				t.Errorf("shared group got %d of %d", r.Received, r.Sent)
			}
		}},
		{"p2p-2-2-q0-16B-r2k", func(t *testing.T, r *Result) {
			// 2000 msg/s for the window, give or take the pacing.
			if r.SendRate < 1000 || r.SendRate > 3000 {
				t.Errorf("send rate %v, want about 2000", r.SendRate)
			}
			if r.Received != r.Sent {
				t.Errorf("received %d of %d at a rate the broker sustains", r.Received, r.Sent)
			}
		}},
		{"persist-2-2-q1-16B-n50", func(t *testing.T, r *Result) {
			if r.Received != 100 || r.Warning != "" {
				t.Errorf("drained %d of 100 (%s)", r.Received, r.Warning)
			}
		}},
		{"retained-100", func(t *testing.T, r *Result) {
			if r.Received != 100 {
				t.Errorf("got %d of 100 retained", r.Received)
			}
		}},
		{"connstorm-40", func(t *testing.T, r *Result) {
			if r.ConnectFailed != 0 || r.ConnectRate <= 0 {
				t.Errorf("connect rate %v, %d failed", r.ConnectRate, r.ConnectFailed)
			}
		}},
		{"idle-40", func(t *testing.T, r *Result) {
			// The broker is this process: RSS is read, the value itself
			// means little here.
			if r.Alive != 40 || r.RSSBefore <= 0 || r.RSSAfter <= 0 {
				t.Errorf("alive %d, rss %d → %d", r.Alive, r.RSSBefore, r.RSSAfter)
			}
			if r.Config["clean"] != true {
				t.Errorf("idle connections should use clean sessions: %v", r.Config)
			}
		}},
		{"idle-40-ka1", func(t *testing.T, r *Result) {
			// Keep alive 1 s: each connection pings once in a 1 s window.
			ka := r.KeepAlive
			if ka == nil || ka.Pings != 40 || ka.Failed != 0 || r.Alive != 40 {
				t.Fatalf("keep-alive window: %+v, alive %d", ka, r.Alive)
			}
			if ka.WindowS < 0.9 || ka.WindowS > 5 || ka.PingRate <= 0 || ka.BrokerCPUS < 0 || ka.RSSAfter <= 0 {
				t.Errorf("window %vs, %v pings/s, broker CPU %vs, RSS after %d", ka.WindowS, ka.PingRate, ka.BrokerCPUS, ka.RSSAfter)
			}
			if ka.Latency == nil || ka.Latency.Count != 40 {
				t.Errorf("ping latency: %+v", ka.Latency)
			}
			if r.Config["keepalive"] != uint16(1) {
				t.Errorf("keep alive announced: %v", r.Config["keepalive"])
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseScenario(c.name)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res := s.Run(ctx, RunSettings{
				Client:    ClientOptions{Addr: addr, SrcIPs: 4, Timeout: 5 * time.Second},
				Warmup:    100 * time.Millisecond,
				Duration:  300 * time.Millisecond,
				BrokerPID: os.Getpid(),
				Prefix:    "smoke/" + c.name,
			})
			if !res.OK {
				t.Fatalf("run failed: %s", res.Error)
			}
			m := checkJSON(t, res, "scenario", "metric", "unit", "better")
			if m["scenario"] != c.name {
				t.Errorf("scenario %v", m["scenario"])
			}
			if !strings.HasPrefix(c.name, "idle-") && res.Primary <= 0 {
				t.Errorf("primary %v", res.Primary)
			}
			c.check(t, res)
		})
	}
}

// A broker that refuses, never answers, or vanishes mid-run gives a clean
// error within the deadlines, never a hang.
func TestBrokerFailures(t *testing.T) {
	t.Parallel()
	quick := ClientOptions{Timeout: 500 * time.Millisecond, SrcIPs: 2}
	w := func(addr string) *Workload {
		o := quick
		o.Addr = addr
		return &Workload{Client: o, Pubs: 1, Subs: 1, PubTopic: "f/%i", SubFilter: "f/%i", Duration: 5 * time.Second, Fan: 1}
	}
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		res := w(addr).Run(context.Background())
		if res.OK || !strings.Contains(res.Error, "refused") {
			t.Fatalf("want a connection refused error, got ok=%v %q", res.OK, res.Error)
		}
		checkJSON(t, res)
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close() // accepts, never answers CONNECT
			}
		}()
		start := time.Now()
		res := w(l.Addr().String()).Run(context.Background())
		if res.OK || !strings.Contains(res.Error, "CONNACK") {
			t.Fatalf("want a CONNACK timeout, got ok=%v %q", res.OK, res.Error)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v to give up", d)
		}
	})
	t.Run("vanishes", func(t *testing.T) {
		t.Parallel()
		addr, stop := startSkybridge(t)
		done := make(chan *Result, 1)
		run := w(addr)
		run.Recorder = NewRecorder()
		go func() { done <- run.Run(context.Background()) }()
		// Stop the broker once messages flow.
		deadline := time.Now().Add(5 * time.Second)
		for run.Recorder.Received.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if run.Recorder.Received.Load() == 0 {
			t.Fatal("no message flowed")
		}
		stop()
		select {
		case res := <-done:
			if res.OK || res.Error == "" {
				t.Fatalf("want an error after the broker vanished, got %+v", res)
			}
			checkJSON(t, res)
		case <-time.After(5 * time.Second):
			t.Fatal("the run did not end after the broker vanished")
		}
	})
}
