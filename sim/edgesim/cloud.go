package edgesim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/blob"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/sim"
)

// cloudProc is skybridge-cloud on the cloud host: the fleet core on the
// host's crashable disk, the embedded broker (the simulator's broker
// process, the real impl/broker core), the cloud's own MQTT connection to
// it, and the API. A crash is a power loss of the host: all of it stops,
// the disk keeps what was synced.
type cloudProc struct {
	w      *World
	host   *sim.Host
	broker *sim.BrokerProc
	fs     *vfs.MemFS
	clock  *sim.Clock
	f      *fleet.Fleet
	blobs  *blob.Store
	mq     *mqttClient
	cert   []byte // the cloud's own client certificate
	tick   deadline
	up     bool
	// Starts counts the cloud's starts.
	Starts int
}

func newCloud(w *World, host *sim.Host) *cloudProc {
	c := &cloudProc{w: w, host: host, fs: vfs.NewCrashableMem()}
	spec := sim.DefaultBrokerSpec()
	spec.Durable = false // nodes use clean sessions; the outbox recovers what a broker crash loses
	spec.Port = 8883
	spec.Config.MaxPacketSize = 1 << 20
	spec.Config.Session.MaxPacketSize = 1 << 20
	spec.Config.Authenticator = certAuth{c}
	if set, err := acl.NewSet(fleet.BrokerACL()); err != nil {
		w.oracle.fail(InvRecovery, "the broker's ACL does not compile: "+err.Error())
	} else {
		spec.Config.Authorizer = set
	}
	c.broker = sim.NewBrokerProc(w.Sim, w.Net, host, spec)
	return c
}

// certAuth stands in for the broker's TLS listener and the fleet's
// NodeAuth: the CONNECT's password carries the client certificate, which
// is verified against the fleet's CA at the broker's (virtual) time.
type certAuth struct{ c *cloudProc }

func (a certAuth) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	f := a.c.f
	if f == nil {
		return broker.AuthResult{Code: packet.ServerUnavailable}
	}
	cert, err := x509.ParseCertificate(req.Password)
	if err != nil {
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: f.CA().Pool(), CurrentTime: a.c.w.Sim.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	r := *req
	r.CertSubject = cert.Subject.String()
	return fleet.NodeAuth{Check: f.CertValid}.Authenticate(&r)
}

// start boots the cloud: the fleet opens its database, the broker
// listens, the cloud connects to it, the API listens.
func (c *cloudProc) start() {
	s := c.w.Sim
	c.clock = s.NewClock(c.host.ID)
	cfg := c.w.sc.Fleet
	cfg.SecretKey = bytes.Repeat([]byte{0x5b}, 32)
	cfg.Broker = c.host.Name + ":8883"
	cfg.API = "https://" + c.host.Name + ":8443"
	cfg.Observer = c.w.oracle
	cfg.Hooks = fleet.Hooks{NoDedupe: c.w.sc.Bugs&BugNoDedupe != 0}
	cfg.DB.MemTableSize = 256 << 10 // a crashable in-memory file copies itself at each sync
	rnd := env.NewRand(s.Rand.Uint64())
	f, err := fleet.Open(cfg, rnd, c.fs, "cloud", s.Now())
	if err != nil {
		c.w.oracle.fail(InvRecovery, "the cloud does not open its database after a power loss: "+err.Error())
		return
	}
	c.f = f
	if c.blobs, err = blob.Open(c.fs, "artifacts"); err != nil {
		c.w.oracle.fail(InvRecovery, "the cloud's artifact store does not open: "+err.Error())
		return
	}
	key, _, _ := ca.NewKey(rnd)
	if c.cert, err = f.IssueCloudCert(key.Public().(ed25519.PublicKey), s.Now()); err != nil {
		c.w.oracle.fail(InvRecovery, "the cloud cannot issue its certificate: "+err.Error())
		return
	}
	c.up = true
	c.Starts++
	if c.broker.Incarnation == 0 {
		c.broker.Start()
	} else {
		c.broker.Restart()
	}
	serveRPC(c.host, c.serve)
	c.mq = &mqttClient{s: s, clock: c.clock, rnd: rnd, host: c.host, to: c.host.Name, port: 8883,
		clientID: fleet.CloudClientID, user: fleet.CloudUser, password: func() []byte { return c.cert },
		filter: api.UpFilter, keepAlive: 30 * time.Second,
		onMessage: func(topic string, payload []byte) {
			if c.up {
				_ = c.f.HandleUp(topic, payload, s.Now())
				c.flush()
			}
		}}
	c.mq.start()
	c.rearm()
}

// crash: the host loses power.
func (c *cloudProc) crash() {
	if !c.up {
		return
	}
	c.up = false
	c.broker.Crash()
	c.host.Crash()
	c.clock.Kill()
	_ = c.f.Close()
	c.f = nil
	c.fs = c.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.w.Sim.Rand.IntN(100), RNG: rand.New(rand.NewPCG(c.w.Sim.Rand.Uint64(), 1))})
}

// restart: the power comes back.
func (c *cloudProc) restart() {
	if c.up {
		return
	}
	c.host.Up()
	c.start()
}

// close releases the databases at the end of a run.
func (c *cloudProc) close() {
	if c.f != nil {
		_ = c.f.Close()
		c.f = nil
	}
	c.broker.Close()
}

// flush does what the fleet asks: publish, close connections.
func (c *cloudProc) flush() {
	if !c.up {
		return
	}
	out := c.f.Ready()
	for _, p := range out.Publish {
		c.mq.publish(p.Topic, p.Payload) // lost when the link is down: nodes ask again
	}
	for _, n := range out.Kick {
		if c.broker.B != nil {
			_ = c.broker.B.KickSession("default", n, true)
		}
	}
	c.rearm()
}

// rearm sets the timer for the fleet's next deadline.
func (c *cloudProc) rearm() {
	c.tick.arm(c.clock, c.f.NextDeadline(), func(now time.Time) {
		if c.up {
			_ = c.f.Tick(now)
			c.flush()
		}
	})
}

// deadline is a process's timer for its core's next deadline.
type deadline struct {
	t  env.Timer
	at time.Time
}

// arm makes fn run at dl (zero: nothing due), unless it already will.
func (d *deadline) arm(clock *sim.Clock, dl time.Time, fn func(now time.Time)) {
	if dl.IsZero() || (d.t != nil && dl.Equal(d.at)) {
		return
	}
	if d.t != nil {
		d.t.Stop()
	}
	d.at = dl
	d.t = clock.AfterFunc(dl.Sub(clock.Now()), func() {
		d.t, d.at = nil, time.Time{}
		fn(clock.Now())
	})
}

// serve answers the API's calls.
func (c *cloudProc) serve(req rpcRequest) (int, []byte) {
	if !c.up {
		return 0, nil
	}
	now := c.w.Sim.Now()
	defer c.flush()
	switch req.Kind {
	case "activate", "renew":
		var resp api.ActivateResponse
		var err error
		if req.Kind == "activate" {
			var ar api.ActivateRequest
			if json.Unmarshal(req.Body, &ar) != nil {
				return http.StatusBadRequest, nil
			}
			resp, err = c.f.Activate(ar, now)
		} else {
			var rr api.RenewRequest
			if json.Unmarshal(req.Body, &rr) != nil {
				return http.StatusBadRequest, nil
			}
			resp, err = c.f.Renew(rr, now)
		}
		if err != nil {
			return fleet.StatusOf(err), []byte(err.Error())
		}
		b, _ := json.Marshal(resp)
		return http.StatusOK, b
	case "artifact":
		nc, err := c.f.CA().Verify(req.Cert, now, false)
		if err != nil || !c.f.CertValid(nc.Node, nc.Serial) {
			return http.StatusUnauthorized, nil
		}
		if !c.f.ArtifactAllowed(nc.Node, req.SHA) {
			return http.StatusForbidden, nil
		}
		r, err := c.blobs.Open(req.SHA)
		if err != nil {
			return http.StatusNotFound, nil
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, b
	}
	return http.StatusNotFound, nil
}
