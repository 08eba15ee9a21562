package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// The admin API (docs/ADMIN.md): JSON over HTTP under /api/v1, guarded by
// a bearer token.

// apiMux is the API without authentication: the admin listener wraps it
// in the token check, the console in its sessions.
func (s *Server) apiMux() http.Handler {
	mux := http.NewServeMux()
	b := s.b
	mux.HandleFunc("GET /api/v1/broker", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.brokerInfo())
	})
	mux.HandleFunc("GET /api/v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.clusterInfo(r.Context()))
	})
	mux.HandleFunc("POST /api/v1/cluster/drain", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Drain() {
			writeError(w, http.StatusConflict, "no other live node to send clients to")
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"draining": true})
	})
	mux.HandleFunc("DELETE /api/v1/cluster/drain", func(w http.ResponseWriter, _ *http.Request) {
		s.Undrain()
		writeJSON(w, http.StatusOK, map[string]bool{"draining": false})
	})
	mux.HandleFunc("GET /api/v1/tenants", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, b.TenantInfos())
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		ti, ok := b.TenantInfo(r.PathValue("tenant"))
		if !ok {
			writeError(w, http.StatusNotFound, "no such tenant")
			return
		}
		writeJSON(w, http.StatusOK, ti)
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}/settings", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Settings().Get(r.PathValue("tenant")))
	})
	mux.HandleFunc("PUT /api/v1/tenants/{tenant}/settings", func(w http.ResponseWriter, r *http.Request) {
		st := *b.Settings().Get(r.PathValue("tenant")) // a partial body changes only what it names
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := b.Settings().Set(r.PathValue("tenant"), st); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.log.Info("tenant settings changed", "tenant", r.PathValue("tenant"), "by", r.RemoteAddr)
		writeJSON(w, http.StatusOK, b.Settings().Get(r.PathValue("tenant")))
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}/sessions", func(w http.ResponseWriter, r *http.Request) {
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 || limit > 10000 {
			limit = 1000
		}
		if q := r.URL.Query().Get("q"); q != "" {
			// A search: the sessions whose client id holds q, paged.
			all, _ := b.Sessions(r.PathValue("tenant"), 0, 0)
			var found []broker.SessionInfo
			for _, si := range all {
				if strings.Contains(si.ClientID, q) {
					found = append(found, si)
				}
			}
			total := len(found)
			found = found[min(max(offset, 0), total):min(max(offset, 0)+limit, total)]
			writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "sessions": found})
			return
		}
		list, total := b.Sessions(r.PathValue("tenant"), max(offset, 0), limit)
		writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "sessions": list})
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}/sessions/{client}", func(w http.ResponseWriter, r *http.Request) {
		si, err := b.Session(r.PathValue("tenant"), r.PathValue("client"))
		if errors.Is(err, broker.ErrNoSession) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, si)
	})
	mux.HandleFunc("DELETE /api/v1/tenants/{tenant}/sessions/{client}", func(w http.ResponseWriter, r *http.Request) {
		discard := r.URL.Query().Get("discard") == "true"
		if err := b.KickSession(r.PathValue("tenant"), r.PathValue("client"), discard); err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		s.log.Info("session kicked", "tenant", r.PathValue("tenant"), "client", r.PathValue("client"), "discard", discard, "by", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		list, _ := b.Sessions(r.PathValue("tenant"), 0, 0)
		type row struct {
			ClientID string `json:"client_id"`
			broker.Subscription
		}
		var out []row
		for _, si := range list {
			full, err := b.Session(r.PathValue("tenant"), si.ClientID)
			if err != nil {
				continue
			}
			for _, sub := range full.Subscriptions {
				out = append(out, row{si.ClientID, sub})
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/v1/tenants/{tenant}/retained", func(w http.ResponseWriter, r *http.Request) {
		filter := r.URL.Query().Get("filter")
		if filter == "" {
			filter = "#"
		}
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 {
			limit = 1000
		}
		if topic.ValidFilter([]byte(filter)) != nil {
			writeError(w, http.StatusBadRequest, "filter: not a valid topic filter")
			return
		}
		writeJSON(w, http.StatusOK, b.Retained(r.PathValue("tenant"), filter, limit, r.URL.Query().Get("payload") == "true"))
	})
	mux.HandleFunc("DELETE /api/v1/tenants/{tenant}/retained", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("topic")
		if name == "" || strings.ContainsAny(name, "+#") {
			writeError(w, http.StatusBadRequest, "topic: a topic name is required")
			return
		}
		b.DeleteRetained(r.PathValue("tenant"), name)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// BrokerInfo is the broker-wide figures of GET /api/v1/broker.
type BrokerInfo struct {
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Connections   int64   `json:"connections"`
	Sessions      int64   `json:"sessions"`
	Tenants       int     `json:"tenants"`
	ConnectsTotal uint64  `json:"connects_total"`
	Refused       uint64  `json:"refused"`
	MessagesIn    uint64  `json:"messages_in"`
	MessagesOut   uint64  `json:"messages_out"`
	BytesIn       uint64  `json:"bytes_in"`
	Dropped       uint64  `json:"dropped"`
}

func (s *Server) brokerInfo() BrokerInfo {
	st := s.b.Stats()
	return BrokerInfo{Version: s.cfg.Version, UptimeSeconds: time.Since(s.started).Seconds(),
		Connections: st.Connections.Load(), Sessions: st.Sessions.Load(), Tenants: len(s.b.Tenants()),
		ConnectsTotal: st.ConnectsTotal.Load(), Refused: st.Refused.Load(), MessagesIn: st.MessagesIn.Load(),
		MessagesOut: st.MessagesOut.Load(), BytesIn: st.BytesIn.Load(), Dropped: st.Dropped.Load()}
}

// requireToken lets a request through with "Authorization: Bearer TOKEN"
// for one of tokens (the empty ones do not count). Without any token,
// everyone passes, or, with loopbackOnly, clients on a loopback address.
func requireToken(next http.Handler, loopbackOnly bool, tokens ...string) http.Handler {
	var want [][]byte
	for _, t := range tokens {
		if t != "" {
			want = append(want, []byte(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(want) == 0 {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); loopbackOnly && (ip == nil || !ip.IsLoopback()) {
				writeError(w, http.StatusForbidden, "the admin API without a token answers on loopback only")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		match := 0
		for _, t := range want {
			match |= subtle.ConstantTimeCompare([]byte(got), t)
		}
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skybridge"`)
			writeError(w, http.StatusUnauthorized, "a valid token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
