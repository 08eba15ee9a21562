package main

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/config"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/event"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/server"
	"github.com/skybridge-mq/skybridge/impl/webhook"
)

// extensions are the authentication, authorization and event pieces the
// configuration asks for, and what must be stopped with them.
type extensions struct {
	authn       broker.Authenticator
	enhanced    broker.EnhancedAuthenticator
	authz       acl.Authorizer
	aclSet      *acl.Set
	events      event.Sink
	eventCounts *event.Counter
	passwd      *auth.PasswordFile
	passwdPath  string
	guard       *auth.Guard
	closers     []func()
}

// gate applies the anonymous-access rule of each listener in front of the
// configured authentication: secure by default, a listener that is not on
// loopback accepts nobody unless authentication is configured or it says
// allow_anonymous.
type gate struct {
	anonymous []string // listeners that allow anonymous clients
	chain     *auth.Chain
}

func (g *gate) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	if g.chain == nil || len(g.chain.Deciders) == 0 {
		// Nothing configured: open where anonymous access is allowed (in the
		// listener's default tenant), closed elsewhere.
		if slices.Contains(g.anonymous, req.Listener) {
			return broker.AllowAll{}.Authenticate(req)
		}
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	return g.chain.Authenticate(req)
}

func buildExtensions(f *config.File, e env.Env, log *slog.Logger) (*extensions, error) {
	x := &extensions{}
	var anon []string
	for _, l := range f.Listeners {
		if l.Anonymous() {
			anon = append(anon, l.Name)
			// Anonymous clients name no tenant anyone vouched for: a user
			// name "acme/mallory" does not make its client a member of acme.
			log.Warn("listener accepts anonymous clients; each goes to the listener's default tenant (a user name never picks a tenant without authentication)",
				"listener", l.Name, "addr", l.Addr, "tenant", l.DefaultTenant)
		}
	}
	chain := &auth.Chain{AllowAnonymous: anon}
	methods := auth.Methods{}
	a := &f.Auth
	// The guard bounds what authentication costs (docs/AUTH.md, "Limits");
	// its events go to the sinks built below.
	workers := a.Limits.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	g, err := auth.NewGuard(auth.GuardOptions{Clock: e.Clock, Workers: workers, PerSource: a.Limits.PerSource,
		Queue: a.Limits.Queue, FreeFailures: a.Limits.FreeFailures, Delay: a.Limits.Delay, MaxDelay: a.Limits.MaxDelay,
		BanAfter: a.Limits.BanAfter, BanFor: a.Limits.BanFor, Forget: a.Limits.ForgetAfter, MaxTracked: a.Limits.MaxTracked,
		RefusalDelay: a.Limits.RefusalDelay,
		Events:       event.SinkFunc(func(ev event.Event) { x.events.Emit(ev) })})
	if err != nil {
		return nil, fmt.Errorf("auth.limits: %w", err)
	}
	x.guard = g
	if a.Certs.Enabled {
		chain.Deciders = append(chain.Deciders, &auth.CertAuth{UserAttr: a.Certs.UserAttr, TenantAttr: a.Certs.TenantAttr})
	}
	if a.PasswordFile != "" {
		data, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("auth.password_file: %w", err)
		}
		if x.passwd, err = auth.NewPasswordFile(data); err != nil {
			return nil, fmt.Errorf("auth.password_file %s: %w", a.PasswordFile, err)
		}
		x.passwdPath = a.PasswordFile
		chain.Deciders = append(chain.Deciders, g.Bounded(x.passwd)) // bcrypt: on the guard's workers
		if a.SCRAM {
			s, err := auth.NewSCRAM(x.passwd, crand.Reader)
			if err != nil {
				return nil, fmt.Errorf("auth.scram: %w", err)
			}
			methods[auth.SCRAMMethod] = s
		}
	} else if a.SCRAM {
		return nil, fmt.Errorf("auth.scram: needs auth.password_file with SCRAM credentials")
	}
	secret := a.JWT.Secret
	if s := os.Getenv("SKYBRIDGE_JWT_SECRET"); s != "" {
		secret = s
	}
	if secret != "" || len(a.JWT.PublicKeys) > 0 {
		var keys []auth.JWTKey
		if secret != "" {
			keys = append(keys, auth.JWTKey{Secret: []byte(secret)})
		}
		for _, path := range a.JWT.PublicKeys {
			pem, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("auth.jwt.public_keys: %w", err)
			}
			keys = append(keys, auth.JWTKey{PublicKeyPEM: pem})
		}
		j, err := auth.NewJWT(auth.JWTOptions{Keys: keys, Clock: e.Clock, TenantClaim: a.JWT.TenantClaim,
			Issuer: a.JWT.Issuer, Audience: a.JWT.Audience, Method: a.JWT.Method,
			RequireExpiry: a.JWT.ExpRequired()})
		if err != nil {
			return nil, fmt.Errorf("auth.jwt: %w", err)
		}
		chain.Deciders = append(chain.Deciders, j)
		if a.JWT.Method != "" {
			methods[a.JWT.Method] = j
		}
	}
	if a.HTTP.URL != "" {
		ep, err := endpoint("auth.http", &a.HTTP)
		if err != nil {
			return nil, err
		}
		h, err := webhook.NewAuthenticator(webhook.AuthConfig{Endpoint: ep, Cache: cacheConfig(a.HTTP.Cache)})
		if err != nil {
			return nil, fmt.Errorf("auth.http: %w", err)
		}
		chain.Deciders = append(chain.Deciders, h)
	}
	x.authn = g.Authenticator(&gate{anonymous: anon, chain: chain})
	if len(methods) > 0 {
		x.enhanced = g.Enhanced(methods)
	}

	set, err := acl.NewSet(acl.Config{DefaultDeny: f.ACL.DefaultDeny, Global: f.ACL.Global, Tenants: f.ACL.Tenants})
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	x.aclSet = set
	x.authz = set
	if f.ACL.HTTP.URL != "" {
		ep, err := endpoint("acl.http", &f.ACL.HTTP)
		if err != nil {
			return nil, err
		}
		h, err := webhook.NewAuthorizer(webhook.AuthzConfig{Endpoint: ep, Cache: cacheConfig(f.ACL.HTTP.Cache)})
		if err != nil {
			return nil, fmt.Errorf("acl.http: %w", err)
		}
		x.authz = acl.AllOf{set, h}
	}

	// Every event is counted for /metrics, per type and tenant (with the
	// admin section's bound on tenant labels).
	x.eventCounts = event.NewCounter(f.Admin.MaxTenantLabels)
	sinks := event.Fanout{x.eventCounts}
	if f.Events.Log == nil || *f.Events.Log {
		sinks = append(sinks, event.NewLog(log.With("component", "events"), event.LogOptions{}))
	}
	if f.Events.Webhook.URL != "" {
		ep, err := endpoint("events.webhook", &f.Events.Webhook)
		if err != nil {
			return nil, err
		}
		s, err := webhook.NewSink(webhook.SinkConfig{Endpoint: ep})
		if err != nil {
			return nil, fmt.Errorf("events.webhook: %w", err)
		}
		sinks = append(sinks, s)
		x.closers = append(x.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Close(ctx)
		})
	}
	x.events = sinks
	return x, nil
}

// reload applies a changed configuration file's ACL rules and, when the
// password file changed, its entries.
func (x *extensions) reload(f *config.File, log *slog.Logger) {
	if err := x.aclSet.Replace(acl.Config{DefaultDeny: f.ACL.DefaultDeny, Global: f.ACL.Global, Tenants: f.ACL.Tenants}); err != nil {
		log.Warn("acl reload refused; the previous rules stay", "err", err)
	}
	if x.passwd != nil && f.Auth.PasswordFile != "" {
		data, err := os.ReadFile(f.Auth.PasswordFile)
		if err == nil {
			err = x.passwd.Replace(data)
		}
		if err != nil {
			log.Warn("password file reload refused; the previous entries stay", "file", f.Auth.PasswordFile, "err", err)
		}
	}
}

func (x *extensions) close() {
	for _, c := range x.closers {
		c()
	}
}

// eventCollector exposes the event counts as skybridge_events_total.
type eventCollector struct{ c *event.Counter }

var eventsTotal = prometheus.NewDesc("skybridge_events_total",
	"Broker events by type and tenant (tenants beyond admin.max_tenant_labels count as \""+event.OtherTenant+"\").",
	[]string{"type", "tenant"}, nil)

func (e eventCollector) Describe(ch chan<- *prometheus.Desc) { ch <- eventsTotal }

func (e eventCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range e.c.Snapshot() {
		ch <- prometheus.MustNewConstMetric(eventsTotal, prometheus.CounterValue, float64(s.Events), s.Type.String(), s.Tenant)
	}
}

// endpoint is a webhook's endpoint: its headers with environment
// references read, and an HTTP client trusting its ca_file.
func endpoint(field string, h *config.AuthHTTP) (webhook.Endpoint, error) {
	ep := webhook.Endpoint{URL: h.URL, Timeout: h.Timeout}
	if len(h.Headers) > 0 {
		ep.Headers = make(map[string]string, len(h.Headers))
		for k, v := range h.Headers {
			v, missing := config.ExpandHeader(v, os.LookupEnv)
			if missing != "" {
				return ep, fmt.Errorf("%s.headers.%s: environment variable %s is not set", field, k, missing)
			}
			ep.Headers[k] = v
		}
	}
	if h.CAFile != "" {
		pool, err := server.LoadCertPool(h.CAFile)
		if err != nil {
			return ep, fmt.Errorf("%s.ca_file: %w", field, err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		ep.Client = &http.Client{Transport: tr}
	}
	return ep, nil
}

func cacheConfig(c config.WebhookCache) webhook.CacheConfig {
	return webhook.CacheConfig{Size: c.Size, AllowTTL: c.AllowTTL, DenyTTL: c.DenyTTL}
}
