package server

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skybridge-mq/skybridge/impl/broker"
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
		maxLabels = 100
	}
	reg.MustRegister(newTenantCollector(s.b, maxLabels))
	for _, c := range s.cfg.Collectors {
		if err := reg.Register(c); err != nil {
			ln.Close()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/api/", s.apiHandler())
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
	return nil
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
	counter("connections_rejected_total", "Connections closed at the connection limit.", func() float64 { return float64(s.rejected.Load()) })
	counter("connection_timeouts_total", "Connections closed for no CONNECT in time or an expired keep alive.", func() float64 { return float64(s.timeouts.Load()) })
	counter("tls_handshake_failures_total", "TLS handshakes that failed.", func() float64 { return float64(s.tlsFailed.Load()) })
}

// tenantCollector exports per-tenant figures. Tenant names are label
// values, so their number is bounded: the first maxTenantLabels tenants (by
// name) get their own series, the rest are summed under tenant="_other".
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
		other := broker.TenantInfo{Name: "_other", Throttled: map[string]uint64{}}
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
