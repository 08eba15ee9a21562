package service

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/cloud/fleet"
	"github.com/skybridge-mq/skybridge/impl/console"
	"github.com/skybridge-mq/skybridge/impl/env"
)

//go:embed openapi.json
var openAPI []byte

// maxJSON bounds a JSON request body.
const maxJSON = 4 << 20

// who may call a route.
type access uint8

const (
	public access = iota // anyone (activation carries its token, renewal its proof)
	admin                // the operator's bearer token
	node                 // a node's client certificate (or the operator)
	hook                 // an external broker's webhook token
)

type route struct {
	method, path string
	access       access
	handle       func(s *Service, w http.ResponseWriter, r *http.Request)
}

// routes is the REST API; openapi.json documents exactly these (a test
// checks both ways).
var routes = []route{
	{"GET", "/healthz", public, (*Service).healthz},
	{"GET", "/openapi.json", public, func(_ *Service, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	}},
	{"GET", "/v1/ca", public, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.tlsCA)
	}},
	{"POST", "/v1/activate", public, (*Service).activate},
	{"POST", "/v1/renew", public, (*Service).renew},
	{"GET", "/v1/artifacts/{sha}", node, (*Service).getArtifact},

	{"GET", "/v1/nodes", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Nodes() }))
	}},
	{"GET", "/v1/nodes/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Node(r.PathValue("name")) })
	}},
	{"GET", "/v1/nodes/{name}/desired", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Desired(r.PathValue("name")) })
	}},
	{"PUT", "/v1/nodes/{name}/labels", admin, (*Service).setLabels},
	{"POST", "/v1/nodes/{name}/revoke", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.Revoke(r.PathValue("name"), time.Now()) })
	}},
	{"DELETE", "/v1/nodes/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteNode(r.PathValue("name"), time.Now()) })
	}},
	{"POST", "/v1/tokens", admin, (*Service).createToken},
	{"GET", "/v1/tokens", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Tokens(time.Now()) }))
	}},
	{"DELETE", "/v1/tokens/{id}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.RevokeToken(r.PathValue("id"), time.Now()) })
	}},

	{"GET", "/v1/apps", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Apps() }))
	}},
	{"GET", "/v1/apps/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.App(r.PathValue("name")) })
	}},
	{"GET", "/v1/apps/{name}/nodes", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.AppNodes(r.PathValue("name")) })
	}},
	{"PUT", "/v1/apps/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var a api.App
		if decode(w, r, &a) {
			a.Name = r.PathValue("name")
			s.answer(w, func(f *fleet.Fleet) (any, error) { return f.PutApp(a, time.Now()) })
		}
	}},
	{"DELETE", "/v1/apps/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteApp(r.PathValue("name"), time.Now()) })
	}},

	{"GET", "/v1/configs", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Configs() }))
	}},
	{"GET", "/v1/configs/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Config(r.PathValue("name")) })
	}},
	{"PUT", "/v1/configs/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var c api.Config
		if decode(w, r, &c) {
			c.Name = r.PathValue("name")
			s.answer(w, func(f *fleet.Fleet) (any, error) { return f.PutConfig(c, time.Now()) })
		}
	}},
	{"DELETE", "/v1/configs/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteConfig(r.PathValue("name"), time.Now()) })
	}},
	{"GET", "/v1/secrets", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Secrets() }))
	}},
	{"GET", "/v1/secrets/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Secret(r.PathValue("name")) })
	}},
	{"PUT", "/v1/secrets/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var c api.Secret
		if decode(w, r, &c) {
			c.Name = r.PathValue("name")
			s.answer(w, func(f *fleet.Fleet) (any, error) { return f.PutSecret(c, time.Now()) })
		}
	}},
	{"DELETE", "/v1/secrets/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteSecret(r.PathValue("name"), time.Now()) })
	}},

	{"GET", "/v1/artifacts", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Artifacts() }))
	}},
	{"POST", "/v1/artifacts", admin, (*Service).putArtifact},
	{"DELETE", "/v1/artifacts/{sha}", admin, (*Service).deleteArtifact},

	{"GET", "/v1/devicemodels", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.DeviceModels() }))
	}},
	{"PUT", "/v1/devicemodels/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var m api.DeviceModel
		if decode(w, r, &m) {
			m.Name = r.PathValue("name")
			s.answer(w, func(f *fleet.Fleet) (any, error) { return m, f.PutDeviceModel(m, time.Now()) })
		}
	}},
	{"DELETE", "/v1/devicemodels/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteDeviceModel(r.PathValue("name"), time.Now()) })
	}},
	{"GET", "/v1/devices", admin, func(s *Service, w http.ResponseWriter, _ *http.Request) {
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.Devices() }))
	}},
	{"PUT", "/v1/devices/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var d api.Device
		if decode(w, r, &d) {
			d.Name = r.PathValue("name")
			s.answer(w, func(f *fleet.Fleet) (any, error) { return d, f.PutDevice(d, time.Now()) })
		}
	}},
	{"DELETE", "/v1/devices/{name}", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return nil, f.DeleteDevice(r.PathValue("name"), time.Now()) })
	}},
	{"GET", "/v1/devices/{name}/shadow", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Shadow(r.PathValue("name")) })
	}},
	{"PUT", "/v1/devices/{name}/shadow/desired", admin, func(s *Service, w http.ResponseWriter, r *http.Request) {
		var props map[string]json.RawMessage
		if decode(w, r, &props) {
			s.answer(w, func(f *fleet.Fleet) (any, error) { return f.SetShadowDesired(r.PathValue("name"), props, time.Now()) })
		}
	}},
	{"GET", "/v1/events", admin, (*Service).events},
	{"POST", "/v1/broker/auth", hook, (*Service).brokerAuth},
	{"POST", "/v1/broker/certificate", admin, (*Service).brokerCert},
}

// apiMux serves the routes, each behind its access check.
func (s *Service) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		rt := rt
		mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) {
			switch rt.access {
			case admin:
				if !s.isAdmin(r) {
					fail(w, http.StatusUnauthorized, "an operator token is required (Authorization: Bearer ...)")
					return
				}
			case node:
				if !s.isAdmin(r) && s.nodeOf(r) == "" {
					fail(w, http.StatusUnauthorized, "a node certificate or an operator token is required")
					return
				}
			case hook:
				if s.hook == "" {
					fail(w, http.StatusNotFound, "no external broker is configured")
					return
				}
				tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.hook)) != 1 {
					fail(w, http.StatusUnauthorized, "the broker hook token is required (Authorization: Bearer ...)")
					return
				}
			}
			rt.handle(s, w, r)
		})
	}
	return mux
}

// consoleUser marks a request the web console hands over: the console has
// checked its session (and, for a change, its CSRF token), so it acts as
// the operator. Only a context value set in process carries it.
type consoleUser struct{}

func (s *Service) startAPI() {
	api := s.apiMux()
	mux := http.NewServeMux()
	mux.Handle("/", api)
	if s.cfg.Console {
		// The console asks for /api/v1/...; the API's paths are /v1/....
		toAPI := http.StripPrefix("/api", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), consoleUser{}, true)))
		}))
		c := console.New(console.Config{Title: "Skybridge cloud", Sections: []console.Section{console.SectionFleet},
			API: toAPI, Token: s.admin, Users: s.cfg.ConsoleUsers, Clock: env.Real().Clock, Rand: crand.Reader,
			Secure: true, Log: s.log})
		mux.Handle("/console/", c)
		mux.Handle("/console", c)
	}
	// Go's TLS server shows the first certificate the client supports:
	// nodes and ctl get the cloud CA's Ed25519 chain, browsers (which
	// verify no Ed25519 signature) the console's ECDSA one.
	certs := []tls.Certificate{s.serverCert}
	if s.cfg.Console {
		certs = append(certs, s.consoleCert)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.f.CA().Cert())
	s.api = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: certs, ClientCAs: pool,
			ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		ErrorLog: log.New(serverLog{s.log}, "", 0),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.api.ServeTLS(s.apiLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("cloud api", "err", err)
		}
	}()
}

// serverLog takes the API server's complaints: TLS handshake errors at
// debug (browsers open and drop connections as they please), the rest
// (a handler's panic, say) as warnings.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := "cloud api: " + strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		l.log.Debug(msg)
	} else {
		l.log.Warn(msg)
	}
	return len(p), nil
}

func (s *Service) isAdmin(r *http.Request) bool {
	if by, _ := r.Context().Value(consoleUser{}).(bool); by {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.admin)) == 1
}

// nodeOf returns the node of the request's verified client certificate
// if the fleet accepts it now ("" otherwise).
func (s *Service) nodeOf(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	name, serial, ok := fleet.SubjectIdentity(r.TLS.VerifiedChains[0][0].Subject.String())
	if !ok || name == fleet.CloudUser {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.f.CertValid(name, serial) {
		return ""
	}
	return name
}

// locked runs fn on the fleet under the lock, then wakes the loop.
func (s *Service) locked(fn func(f *fleet.Fleet) any) any {
	s.mu.Lock()
	v := fn(s.f)
	s.mu.Unlock()
	s.kick()
	return v
}

// answer replies with fn's result or error.
func (s *Service) answer(w http.ResponseWriter, fn func(f *fleet.Fleet) (any, error)) {
	s.mu.Lock()
	v, err := fn(s.f)
	s.mu.Unlock()
	s.kick()
	if err != nil {
		fail(w, fleet.StatusOf(err), err.Error())
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	reply(w, v)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// decode reads a JSON body (bounded); false when it answered an error.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return false
	}
	return true
}

func (s *Service) healthz(w http.ResponseWriter, _ *http.Request) {
	reply(w, map[string]any{"ok": true, "link": s.link.Up()})
}

func (s *Service) activate(w http.ResponseWriter, r *http.Request) {
	var req api.ActivateRequest
	if decode(w, r, &req) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Activate(req, time.Now()) })
	}
}

func (s *Service) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if decode(w, r, &req) {
		s.answer(w, func(f *fleet.Fleet) (any, error) { return f.Renew(req, time.Now()) })
	}
}

type labelsBody struct {
	Labels map[string]string `json:"labels"`
}

func (s *Service) setLabels(w http.ResponseWriter, r *http.Request) {
	var b labelsBody
	if decode(w, r, &b) {
		name := r.PathValue("name")
		s.answer(w, func(f *fleet.Fleet) (any, error) {
			if err := f.SetLabels(name, b.Labels, time.Now()); err != nil {
				return nil, err
			}
			return f.Node(name)
		})
	}
}

type tokenBody struct {
	Node   string            `json:"node"`
	Labels map[string]string `json:"labels,omitempty"`
	TTL    api.Duration      `json:"ttl,omitempty"`
}

type tokenReply struct {
	Node  string `json:"node"`
	Token string `json:"token"`
	Join  string `json:"join"`
}

func (s *Service) createToken(w http.ResponseWriter, r *http.Request) {
	var b tokenBody
	if decode(w, r, &b) {
		s.answer(w, func(f *fleet.Fleet) (any, error) {
			join, tok, err := f.CreateToken(b.Node, b.Labels, b.TTL.D(), time.Now())
			if err != nil {
				return nil, err
			}
			return tokenReply{Node: b.Node, Token: tok, Join: join}, nil
		})
	}
}

// putArtifact stores the body (an executable) and registers it; the
// query's name is the file name the app sees.
func (s *Service) putArtifact(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if strings.ContainsAny(name, "/\x00") {
		fail(w, http.StatusBadRequest, "name: a file name")
		return
	}
	sha, size, err := s.blobs.Put(http.MaxBytesReader(w, r.Body, s.cfg.MaxArtifactBytes), r.URL.Query().Get("sha256"))
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	info := fleet.ArtifactInfo{SHA256: sha, Size: size, Name: name}
	s.answer(w, func(f *fleet.Fleet) (any, error) {
		if err := f.PutArtifact(info, time.Now()); err != nil {
			return nil, err
		}
		a, _ := f.Artifact(sha)
		return a, nil
	})
}

func (s *Service) deleteArtifact(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	s.mu.Lock()
	err := s.f.DeleteArtifact(sha, time.Now())
	s.mu.Unlock()
	if err != nil {
		fail(w, fleet.StatusOf(err), err.Error())
		return
	}
	_ = s.blobs.Remove(sha)
	w.WriteHeader(http.StatusNoContent)
}

// getArtifact streams an artifact to a node whose desired state uses it
// (or to the operator).
func (s *Service) getArtifact(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	if !s.isAdmin(r) {
		n := s.nodeOf(r)
		s.mu.Lock()
		ok := s.f.ArtifactAllowed(n, sha)
		s.mu.Unlock()
		if !ok {
			fail(w, http.StatusForbidden, "no app of this node uses artifact "+sha)
			return
		}
	}
	f, err := s.blobs.Open(sha)
	if err != nil {
		fail(w, http.StatusNotFound, "artifact "+sha+" not found")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, f)
}

// events answers the events after since (at most limit), or with last
// the newest last events.
func (s *Service) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if v := q.Get("last"); v != "" {
		last, err := strconv.Atoi(v)
		if err != nil || last < 1 || last > 10000 {
			fail(w, http.StatusBadRequest, "last: a number from 1 to 10000")
			return
		}
		reply(w, s.locked(func(f *fleet.Fleet) any { return f.LastEvents(last) }))
		return
	}
	since, _ := strconv.ParseUint(q.Get("since"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	reply(w, s.locked(func(f *fleet.Fleet) any { return f.Events(since, limit) }))
}

// hookRequest is what the broker's authentication webhook sends (the
// protocol of impl/webhook; the fields the cloud reads).
type hookRequest struct {
	ClientID    string `json:"clientid"`
	Listener    string `json:"listener"`
	CertSubject string `json:"cert_subject"`
}

// brokerAuth answers the external broker's authentication webhook. Its
// request is read leniently (unlike the API's): the broker sends more
// than the cloud reads (the password, the remote address), and may send
// more in later versions.
func (s *Service) brokerAuth(w http.ResponseWriter, r *http.Request) {
	var req hookRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	x := s.cfg.External
	if req.Listener != x.Listener {
		reply(w, fleet.HookAnswer{Result: "ignore"})
		return
	}
	s.mu.Lock()
	a := s.f.BrokerHook(req.CertSubject, req.ClientID, x.Tenant)
	s.mu.Unlock()
	if a.Result != "allow" {
		s.log.Info("cloud: refused a broker client", "subject", req.CertSubject, "clientid", req.ClientID)
	}
	reply(w, a)
}

// brokerCert issues an external broker's server certificate from the
// fleet CA, which is all nodes trust.
func (s *Service) brokerCert(w http.ResponseWriter, r *http.Request) {
	var req api.BrokerCertRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.PublicKey) != ed25519.PublicKeySize || len(req.Hosts) == 0 {
		fail(w, http.StatusBadRequest, "public_key (32 bytes of Ed25519, base64) and at least one host are required")
		return
	}
	s.answer(w, func(f *fleet.Fleet) (any, error) {
		der, err := f.IssueBrokerCert(ed25519.PublicKey(req.PublicKey), req.Hosts, time.Now())
		if err != nil {
			return nil, err
		}
		caPEM := string(ca.PEM("CERTIFICATE", f.CA().CertDER()))
		return api.BrokerCertResponse{Certificate: string(ca.PEM("CERTIFICATE", der)) + caPEM, CA: caPEM}, nil
	})
}
