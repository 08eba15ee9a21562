package edgesim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/agent"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/sim"
)

// edgeProc is skybridge-edge on one node's host: the agent core on the
// host's crashable disk, its MQTT link, its calls to the API, a simulated
// app runner and a simulated device. A crash is a power loss of the host.
type edgeProc struct {
	w      *World
	name   string
	host   *sim.Host
	fs     *vfs.MemFS
	clock  *sim.Clock
	a      *agent.Agent
	mq     *mqttClient
	join   api.JoinToken
	up     bool
	bootAt time.Time
	// linkUpSince: when the link last came up (zero while it is down).
	linkUpSince time.Time
	tick        deadline

	apps map[string]*simApp // the runner: what actually runs
	// device: the values the simulated device holds.
	device      map[string]json.RawMessage
	deviceTimer env.Timer

	Boots int
	epoch uint64 // the store's, once known
}

// simApp is a process of the simulated runner.
type simApp struct {
	gen     uint64
	spec    string // the spec's hash
	running bool
	// downSince: when it last stopped running (zero while it runs).
	downSince time.Time
	startT    env.Timer
}

func newEdge(w *World, name string, host *sim.Host) *edgeProc {
	return &edgeProc{w: w, name: name, host: host, fs: vfs.NewCrashableMem(), apps: map[string]*simApp{}}
}

func (e *edgeProc) deviceName() string { return e.name + "-dev" }

// boot starts the agent from the disk.
func (e *edgeProc) boot() {
	s := e.w.Sim
	e.clock = s.NewClock(e.host.ID)
	e.bootAt = s.Now()
	e.Boots++
	cfg := e.w.sc.Agent
	cfg.Observer = e.w.oracle
	cfg.Hooks = e.w.sc.Bugs.agentHooks()
	// Small memtables: a crashable in-memory file copies all its data at
	// each sync, and the WAL grows up to the memtable's size.
	cfg.DB.MemTableSize = 64 << 10
	cfg.DB.CacheSize = 256 << 10
	a, err := agent.New(cfg, env.NewRand(s.Rand.Uint64()), e.fs, "edge", s.Now())
	if err != nil {
		e.w.oracle.fail(InvRecovery, e.name+": the agent does not open its store after a power loss: "+err.Error())
		return
	}
	if e.epoch != 0 && a.Epoch() != e.epoch {
		e.w.oracle.fail(InvRecovery, e.name+": the node's store came back empty after a power loss")
	}
	e.epoch = a.Epoch()
	e.a = a
	e.up = true
	e.linkUpSince = time.Time{}
	rnd := env.NewRand(s.Rand.Uint64())
	e.mq = &mqttClient{s: s, clock: e.clock, rnd: rnd, host: e.host, to: e.w.cloud.host.Name, port: 8883,
		clientID: e.name, user: e.name, keepAlive: 60 * time.Second,
		password: func() []byte {
			c, _ := e.a.Credentials()
			return c.Cert
		},
		onUp:   func() { e.linkUpSince = s.Now(); e.a.LinkUp(s.Now()); e.drain() },
		onDown: func() { e.linkUpSince = time.Time{}; e.a.LinkDown(s.Now()); e.drain() },
		onMessage: func(topic string, payload []byte) {
			e.a.Message(topic, payload, s.Now())
			e.drain()
		}}
	if c, ok := a.Credentials(); ok {
		e.mq.filter = api.NodeDownTopic(c.Node)
		e.mq.start()
	} else if err := a.Activate(e.join, s.Now()); err != nil {
		e.w.oracle.fail(InvProtocol, e.name+": "+err.Error())
	}
	e.scheduleDeviceReport()
	e.drain()
}

// crash: the node loses power. Its apps die with it.
func (e *edgeProc) crash() {
	if !e.up {
		return
	}
	s := e.w.Sim
	e.up = false
	e.mq.stop()
	e.host.Crash()
	e.clock.Kill()
	_ = e.a.Close()
	e.a = nil
	// The processes die with the host: the runner starts from nothing.
	e.apps = map[string]*simApp{}
	pct := 0
	if s.Chance(0.5) {
		pct = 1 + s.Rand.IntN(100)
	}
	e.fs = e.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(s.Rand.Uint64(), 2))})
	s.Note(sim.KindCrash, e.host.ID, 0, e.name)
}

func (e *edgeProc) restart() {
	if e.up {
		return
	}
	e.host.Up()
	e.w.Sim.Note(sim.KindRestart, e.host.ID, 0, e.name)
	e.boot()
}

// drain does what the agent asks.
func (e *edgeProc) drain() {
	if !e.up {
		return
	}
	for {
		r := e.a.Ready()
		if r.Empty() {
			break
		}
		for _, p := range r.Publish {
			e.mq.publish(p.Topic, p.Payload)
		}
		for _, st := range r.Stop {
			if ap := e.apps[st.Name]; ap != nil && ap.gen == st.Gen {
				e.stopApp(ap)
				delete(e.apps, st.Name)
			}
		}
		for _, st := range r.Start {
			e.startApp(st)
		}
		for _, art := range r.Fetch {
			e.fetch(art)
		}
		for _, q := range r.Requests {
			e.request(q)
		}
		for _, d := range r.Devices {
			e.writeDevice(d)
		}
		if r.Reconnect {
			if c, ok := e.a.Credentials(); ok {
				e.mq.filter = api.NodeDownTopic(c.Node)
				if e.mq.state == mDown && e.mq.retryT == nil && e.mq.Connects == 0 {
					e.mq.start()
				} else {
					e.mq.reconnect()
				}
			}
		}
	}
	e.rearm()
}

func (e *edgeProc) rearm() {
	e.tick.arm(e.clock, e.a.NextDeadline(), func(now time.Time) {
		if e.up {
			e.a.Tick(now)
			e.drain()
		}
	})
}

// --- the simulated runner ---

func (e *edgeProc) stopApp(ap *simApp) {
	if ap.startT != nil {
		ap.startT.Stop()
	}
	if ap.running {
		ap.running, ap.downSince = false, e.w.Sim.Now()
	}
}

// startApp replaces the app's process: it runs after a short start delay,
// if its artifact is on the node.
func (e *edgeProc) startApp(st agent.StartApp) {
	s := e.w.Sim
	ap := e.apps[st.Name]
	if ap == nil {
		ap = &simApp{downSince: s.Now()}
		e.apps[st.Name] = ap
	}
	e.stopApp(ap)
	ap.gen, ap.spec = st.Gen, st.Spec.Hash()
	gen := st.Gen
	ap.startT = e.clock.AfterFunc(s.Uniform(10*time.Millisecond, 300*time.Millisecond), func() {
		if !e.up || ap.gen != gen {
			return
		}
		if !e.a.Artifacts().Has(st.Spec.Artifact.SHA256, st.Spec.Artifact.Size) {
			e.a.AppFailed(st.Name, gen, "artifact missing", s.Now())
			e.drain()
			return
		}
		ap.running, ap.downSince = true, time.Time{}
		e.a.AppStarted(st.Name, gen, 1000+int(gen), s.Now())
		e.drain()
	})
}

// crashApp makes a running app exit with an error (a fault).
func (e *edgeProc) crashApp() {
	if !e.up {
		return
	}
	var running []string
	for name, ap := range e.apps {
		if ap.running {
			running = append(running, name)
		}
	}
	if len(running) == 0 {
		return
	}
	slices.Sort(running)
	name := running[e.w.Sim.Rand.IntN(len(running))]
	ap := e.apps[name]
	ap.running, ap.downSince = false, e.w.Sim.Now()
	e.w.Sim.Note(sim.KindFault, e.host.ID, 0, "app crash "+e.name+"/"+name)
	e.a.AppExited(name, ap.gen, 1, e.w.Sim.Now())
	e.drain()
}

// --- calls to the API ---

func (e *edgeProc) fetch(art api.Artifact) {
	c, _ := e.a.Credentials()
	a := e.a
	call(e.clock, e.host, e.w.cloud.host.Name, rpcRequest{Kind: "artifact", Cert: c.Cert, SHA: art.SHA256}, 30*time.Second,
		func(status int, body []byte) {
			if !e.up || e.a != a {
				return
			}
			now := e.w.Sim.Now()
			if status == 200 {
				if _, _, err := a.Artifacts().Put(bytes.NewReader(body), art.SHA256); err == nil {
					a.ArtifactReady(art.SHA256, now)
					e.drain()
					return
				}
			}
			a.ArtifactFailed(art.SHA256, now)
			e.drain()
		})
}

func (e *edgeProc) request(q agent.Request) {
	a := e.a
	call(e.clock, e.host, e.w.cloud.host.Name, rpcRequest{Kind: q.Kind, Body: q.Body}, 30*time.Second,
		func(status int, body []byte) {
			if !e.up || e.a != a {
				return
			}
			if q.Kind == agent.ReqRenew && status == 200 && a.CertExpires().Before(e.w.Sim.Now()) {
				e.w.LateRenewals++ // the certificate expired during an outage
			}
			if err := a.Response(q.ID, status, body, e.w.Sim.Now()); err != nil && q.Kind == agent.ReqActivate {
				// A lost answer used the token: the operator makes another.
				e.w.newJoin(e)
				if err := a.Activate(e.join, e.w.Sim.Now()); err != nil {
					e.w.oracle.fail(InvProtocol, e.name+": "+err.Error())
				}
			}
			e.drain()
		})
}

// --- the simulated device ---

// writeDevice: the device takes the desired values after a moment and
// reports them.
func (e *edgeProc) writeDevice(d agent.DeviceDesired) {
	a := e.a
	e.clock.AfterFunc(e.w.Sim.Uniform(100*time.Millisecond, 2*time.Second), func() {
		if !e.up || e.a != a {
			return
		}
		if e.device == nil {
			e.device = map[string]json.RawMessage{}
		}
		for k, v := range d.Props {
			e.device[k] = v
		}
		a.DeviceReported(api.DeviceReport{Device: d.Device, Props: d.Props}, e.w.Sim.Now())
		e.drain()
	})
}

// scheduleDeviceReport: the device reports a measurement every few
// minutes (the outbox's steady load).
func (e *edgeProc) scheduleDeviceReport() {
	s := e.w.Sim
	every := e.w.sc.DeviceEvery
	if every <= 0 {
		return
	}
	a := e.a
	e.deviceTimer = e.clock.AfterFunc(s.Exp(every), func() {
		if !e.up || e.a != a {
			return
		}
		if a.Activated() {
			v := json.RawMessage(strconv.Itoa(s.Rand.IntN(400)))
			a.DeviceReported(api.DeviceReport{Device: e.deviceName(), Props: map[string]json.RawMessage{"temp": v}}, s.Now())
			e.drain()
		}
		e.scheduleDeviceReport()
	})
}
