package server

import (
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
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
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
	counter("store_errors_total", "Batches the durable store failed to commit.", func() float64 { return float64(st.StoreErrors.Load()) })
	counter("store_full_refusals_total", "QoS 1/2 messages refused because the store is over storage.max_bytes.", func() float64 { return float64(st.StoreFull.Load()) })
	counter("messages_unrouted_total", "PUBLISH packets that matched no subscription.", func() float64 { return float64(st.NoSubscribers.Load()) })
	counter("wills_published_total", "Will messages published.", func() float64 { return float64(st.WillsSent.Load()) })
	counter("sessions_expired_total", "Sessions discarded at expiry or at the end of their connection.", func() float64 { return float64(st.Expired.Load()) })
	counter("connections_rejected_total", "Connections closed at the connection limit.", func() float64 { return float64(s.rejected.Load()) })
	counter("connection_timeouts_total", "Connections closed for no CONNECT in time or an expired keep alive.", func() float64 { return float64(s.timeouts.Load()) })
	counter("tls_handshake_failures_total", "TLS handshakes that failed.", func() float64 { return float64(s.tlsFailed.Load()) })
}
