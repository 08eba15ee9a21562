package server

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/console"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
)

// startAdmin serves /metrics, /healthz and /readyz on cfg.AdminAddr.
func (s *Server) startAdmin() error {
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.lns["admin"] = ln
	s.mu.Unlock()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.registerMetrics(reg)
	maxLabels := s.cfg.MaxTenantLabels
	if maxLabels <= 0 {
		maxLabels = event.DefaultMaxTenants
	}
	reg.MustRegister(newTenantCollector(s.b, maxLabels))
	for _, c := range s.cfg.Collectors {
		if err := reg.Register(c); err != nil {
			ln.Close()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	hosts := s.adminHosts()
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("/metrics", hosts.check(requireToken(metrics, false, s.cfg.MetricsToken, s.cfg.AdminToken)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	api := s.apiMux()
	mux.Handle("/api/", hosts.check(requireToken(api, true, s.cfg.AdminToken)))
	if s.cfg.Console {
		sections := []console.Section{console.SectionBroker}
		if s.cfg.Cluster != nil {
			sections = append(sections, console.SectionCluster)
		}
		c := console.New(console.Config{Title: "Skybridge broker", Sections: sections,
			API: api, Token: s.cfg.AdminToken, Users: s.cfg.ConsoleUsers, Clock: env.Real().Clock, Rand: rand.Reader,
			Log: s.log})
		mux.Handle("/console/", hosts.check(c))
		mux.Handle("/console", hosts.check(c))
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.closed.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.https = append(s.https, hs)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = hs.Serve(ln)
	}()
	s.log.Info("admin listening", "addr", ln.Addr().String())
	s.warnOffLoopback(ln.Addr())
	return nil
}

// warnOffLoopback says at start that the admin server is reachable from
// the network, and what is open there without a token.
func (s *Server) warnOffLoopback(a net.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() {
		return
	}
	switch {
	case s.cfg.AdminToken == "" && s.cfg.MetricsToken == "":
		s.log.Warn("admin listener is not on loopback and has no token: /metrics is open to the network "+
			"(the admin API answers loopback clients only); set admin.token or admin.metrics_token", "addr", a.String())
	case s.cfg.AdminToken == "":
		s.log.Warn("admin listener is not on loopback and has no token: the admin API answers loopback clients only", "addr", a.String())
	default:
		s.log.Warn("admin listener is not on loopback: the token crosses the network in clear unless a TLS proxy or a firewall protects it", "addr", a.String())
	}
}

// hostCheck keeps the admin server from answering a browser that reaches
// it under a name of the attacker's (DNS rebinding: a page of evil.example
// whose name is made to resolve to 127.0.0.1 may otherwise read the
// loopback-only API). A request's Host must be an address of the listener
// (the one the connection came to; any loopback address on loopback),
// localhost on loopback, the machine's host name, or one of AdminHosts. A
// request without Host (HTTP/1.0) is not a browser's and passes.
type hostCheck map[string]bool

func (s *Server) adminHosts() hostCheck {
	names := hostCheck{}
	for _, h := range s.cfg.AdminHosts {
		names[normalHost(h)] = true
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		names[normalHost(h)] = true
	}
	return names
}

// normalHost returns host without port, brackets and trailing dot, in
// lower case.
func normalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func (hc hostCheck) allowed(r *http.Request) bool {
	if r.Host == "" {
		return true
	}
	h := normalHost(r.Host)
	if hc[h] {
		return true
	}
	var local netip.Addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			local = ap.Addr().Unmap()
		}
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap()
		return local.IsValid() && (ip == local || ip.IsLoopback() && local.IsLoopback())
	}
	return h == "localhost" && local.IsLoopback()
}

func (hc hostCheck) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hc.allowed(r) {
			writeError(w, http.StatusForbidden, "Host "+strconv.Quote(r.Host)+" is not a name of this admin server (add it to admin.hosts)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// registerMetrics exposes the broker's and the runtime's counters.
func (s *Server) registerMetrics(reg *prometheus.Registry) {
	st := s.b.Stats()
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "skybridge", Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "skybridge", Name: name, Help: help}, f))
	}
	gauge("connections", "Client connections with an accepted CONNECT.", func() float64 { return float64(st.Connections.Load()) })
	gauge("sockets_open", "Open client sockets, CONNECT accepted or not.", func() float64 { return float64(s.open.Load()) })
	gauge("sessions", "Sessions, connected or not.", func() float64 { return float64(st.Sessions.Load()) })
	counter("connects_total", "Accepted CONNECTs.", func() float64 { return float64(st.ConnectsTotal.Load()) })
	counter("connects_refused_total", "Refused CONNECTs.", func() float64 { return float64(st.Refused.Load()) })
	counter("protocol_errors_total", "Connections closed for a malformed packet or a protocol error.", func() float64 { return float64(st.ProtocolError.Load()) })
	counter("messages_received_total", "PUBLISH packets received from clients.", func() float64 { return float64(st.MessagesIn.Load()) })
	counter("bytes_received_total", "Payload bytes received in PUBLISH packets.", func() float64 { return float64(st.BytesIn.Load()) })
	counter("messages_delivered_total", "Messages handed to subscribers' sessions.", func() float64 { return float64(st.MessagesOut.Load()) })
	for i, reason := range broker.DropReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "skybridge", Name: "messages_dropped_total",
			Help:        "Deliveries dropped, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(st.DroppedBy[i].Load()) }))
	}
	for i, reason := range broker.ThrottleReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "skybridge", Name: "throttled_total",
			Help:        "Throttle reactions, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(st.Throttled[i].Load()) }))
	}
	counter("store_errors_total", "Batches the durable store failed to commit.", func() float64 { return float64(st.StoreErrors.Load()) })
	counter("store_full_refusals_total", "QoS 1/2 messages refused because the store is over storage.max_bytes.", func() float64 { return float64(st.StoreFull.Load()) })
	counter("messages_unrouted_total", "PUBLISH packets that matched no subscription.", func() float64 { return float64(st.NoSubscribers.Load()) })
	counter("wills_published_total", "Will messages published.", func() float64 { return float64(st.WillsSent.Load()) })
	counter("sessions_expired_total", "Sessions discarded at expiry or at the end of their connection.", func() float64 { return float64(st.Expired.Load()) })
	counter("tenants_freed_total", "Tenants removed from memory because they held nothing.", func() float64 { return float64(st.TenantsFreed.Load()) })
	if s.cfg.Broker.Cluster != nil {
		counter("cluster_connections_refused_total", "CONNECTs refused at the tenant's max_connections that this node's own clients alone would have let in.",
			func() float64 { return float64(st.ClusterConnectionsRefused.Load()) })
	}
	counter("connections_rejected_total", "Connections closed at the connection limit.", func() float64 { return float64(s.rejected.Load()) })
	counter("connection_timeouts_total", "Connections closed for no CONNECT in time or an expired keep alive.", func() float64 { return float64(s.timeouts.Load()) })
	counter("parked_wakes_total", "Parked idle connections given a reader again: bytes other than a lone PINGREQ, a hang-up, the keep-alive deadline, a close.",
		func() float64 { return float64(s.resumed.Load()) })
	counter("parked_pings_total", "PINGREQs of parked connections answered without waking them.", func() float64 { return float64(s.parkedPings.Load()) })
	counter("tls_handshake_failures_total", "TLS handshakes that failed.", func() float64 { return float64(s.tlsFailed.Load()) })
	if g := s.cfg.AuthGuard; g != nil {
		reg.MustRegister(authCollector{g})
		counter("auth_refusals_held_total", "Refused CONNECTs of throttled or banned sources answered after auth.limits.refusal_delay.",
			func() float64 { return float64(s.held.Load()) })
		counter("auth_refusals_not_held_total", "Refusals answered at once because the server already held as many as it may.",
			func() float64 { return float64(s.notHeld.Load()) })
	}
}

// authCollector exports the authentication guard's counters (one Stats
// call per scrape).
type authCollector struct{ g *auth.Guard }

var (
	authVerifications = prometheus.NewDesc("skybridge_auth_verifications_total",
		"Password and SCRAM verifications run on the auth workers.", nil, nil)
	authWaited = prometheus.NewDesc("skybridge_auth_verifications_waited_total",
		"Verifications that waited in the queue for a worker.", nil, nil)
	authRefused = prometheus.NewDesc("skybridge_auth_refused_total",
		"CONNECTs refused by the auth limits before any verification: busy (0x89, queue full), throttled (0x9F), banned (0x8A).", []string{"reason"}, nil)
	authThrottles = prometheus.NewDesc("skybridge_auth_throttles_started_total",
		"Throttles started, per source address or per user name.", []string{"key"}, nil)
	authBans = prometheus.NewDesc("skybridge_auth_bans_total",
		"Source addresses banned.", nil, nil)
	authEvicted = prometheus.NewDesc("skybridge_auth_tracker_evictions_total",
		"Failure records dropped by the auth.limits.max_tracked bound.", nil, nil)
	authRunning = prometheus.NewDesc("skybridge_auth_verifications_running",
		"Verifications running now.", nil, nil)
	authWaiting = prometheus.NewDesc("skybridge_auth_verifications_waiting",
		"Verifications waiting for a worker now.", nil, nil)
	authTracked = prometheus.NewDesc("skybridge_auth_tracked",
		"Source addresses and user names with a failure record.", []string{"key"}, nil)
)

func (authCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{authVerifications, authWaited, authRefused, authThrottles, authBans, authEvicted, authRunning, authWaiting, authTracked} {
		ch <- d
	}
}

func (c authCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.Stats()
	k := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	k(authVerifications, st.Verifications)
	k(authWaited, st.Waited)
	k(authRefused, st.Busy, "busy")
	k(authRefused, st.Throttled, "throttled")
	k(authRefused, st.Banned, "banned")
	k(authThrottles, st.SourceThrottles, "source")
	k(authThrottles, st.UserThrottles, "user")
	k(authBans, st.Bans)
	k(authEvicted, st.Evicted)
	g(authRunning, st.Running)
	g(authWaiting, st.Waiting)
	g(authTracked, st.Sources, "source")
	g(authTracked, st.Users, "user")
}

// tenantCollector exports per-tenant figures. Tenant names are label
// values, so their number is bounded: the first maxTenantLabels tenants (by
// name) get their own series, the rest are summed under
// tenant=event.OtherTenant ("_other", as the event counts).
type tenantCollector struct {
	b         *broker.Broker
	maxLabels int
	descs     map[string]*prometheus.Desc
}

func newTenantCollector(b *broker.Broker, maxLabels int) *tenantCollector {
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("skybridge_tenant_"+name, help, append([]string{"tenant"}, extra...), nil)
	}
	return &tenantCollector{b: b, maxLabels: maxLabels, descs: map[string]*prometheus.Desc{
		"connected":     d("connections", "Connected clients of the tenant."),
		"sessions":      d("sessions", "Sessions of the tenant, connected or not."),
		"subscriptions": d("subscriptions", "Subscriptions of the tenant."),
		"retained":      d("retained_messages", "Retained messages of the tenant."),
		"in":            d("messages_received_total", "PUBLISH packets received from the tenant's clients."),
		"out":           d("messages_delivered_total", "Messages handed to the tenant's sessions."),
		"bytes":         d("bytes_received_total", "Payload bytes received from the tenant's clients."),
		"dropped":       d("messages_dropped_total", "Deliveries dropped in the tenant."),
		"throttled":     d("throttled_total", "Throttle reactions in the tenant, by reason.", "reason"),
	}}
}

func (c *tenantCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *tenantCollector) Collect(ch chan<- prometheus.Metric) {
	infos := c.b.TenantInfos()
	if len(infos) > c.maxLabels {
		other := broker.TenantInfo{Name: event.OtherTenant, Throttled: map[string]uint64{}}
		for _, ti := range infos[c.maxLabels:] {
			other.Connected += ti.Connected
			other.Sessions += ti.Sessions
			other.Subscriptions += ti.Subscriptions
			other.Retained += ti.Retained
			other.MessagesIn += ti.MessagesIn
			other.MessagesOut += ti.MessagesOut
			other.BytesIn += ti.BytesIn
			other.Dropped += ti.Dropped
			for r, n := range ti.Throttled {
				other.Throttled[r] += n
			}
		}
		infos = append(infos[:c.maxLabels], other)
	}
	for _, ti := range infos {
		g := func(key string, v float64) {
			ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.GaugeValue, v, ti.Name)
		}
		k := func(key string, v uint64) {
			ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.CounterValue, float64(v), ti.Name)
		}
		g("connected", float64(ti.Connected))
		g("sessions", float64(ti.Sessions))
		g("subscriptions", float64(ti.Subscriptions))
		g("retained", float64(ti.Retained))
		k("in", ti.MessagesIn)
		k("out", ti.MessagesOut)
		k("bytes", ti.BytesIn)
		k("dropped", ti.Dropped)
		for _, r := range broker.ThrottleReasons {
			if n, ok := ti.Throttled[r]; ok {
				ch <- prometheus.MustNewConstMetric(c.descs["throttled"], prometheus.CounterValue, float64(n), ti.Name, r)
			}
		}
	}
}
