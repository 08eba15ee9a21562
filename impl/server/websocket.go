package server

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// serveWebSocket serves MQTT over WebSocket on ln: binary frames only
// [MQTT-6.0.0-1], packets may span or share frames [MQTT-6.0.0-2], and the
// "mqtt" subprotocol is required and selected [MQTT-6.0.0-3] [MQTT-6.0.0-4].
func (s *Server) serveWebSocket(ln net.Listener, lc ListenerConfig) {
	path := lc.Path
	if path == "" {
		path = "/mqtt"
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols:       []string{"mqtt"},
			InsecureSkipVerify: true, // MQTT clients are not browsers bound by origin rules
		})
		if err != nil {
			return
		}
		if ws.Subprotocol() != "mqtt" {
			ws.Close(websocket.StatusPolicyViolation, "the mqtt subprotocol is required")
			return
		}
		ws.SetReadLimit(int64(s.cfg.Broker.MaxPacketSize) + 1024)
		cert := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cert = r.TLS.PeerCertificates[0].Subject.String()
		}
		// NetConn reads binary messages as one byte stream and closes the
		// connection on a text message.
		nc := websocket.NetConn(r.Context(), ws, websocket.MessageBinary)
		s.serve(nc, &lc, r.RemoteAddr, cert)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: s.cfg.ConnectTimeout, IdleTimeout: time.Minute}
	s.mu.Lock()
	s.https = append(s.https, hs)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := hs.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && !s.closed.Load() {
			s.log.Error("websocket listener", "listener", lc.Name, "err", err)
		}
	}()
}
