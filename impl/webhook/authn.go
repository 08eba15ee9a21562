package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// AuthConfig configures an HTTP Authenticator.
type AuthConfig struct {
	Endpoint
	Cache   CacheConfig
	Breaker BreakerConfig
	// ACLExclusive: what an answer's "acl" does not grant is denied
	// (see acl.Claim.Compile).
	ACLExclusive bool
	// Clock reads cache expiry and the breaker's cooldown (nil: real time).
	Clock env.Clock
}

// Authenticator asks an HTTP endpoint whether a client may connect. It
// implements broker.Authenticator and auth.Decider; it is safe for
// concurrent use. Authenticate blocks for at most the request timeout.
type Authenticator struct {
	cfg   AuthConfig
	key   []byte // keys the cache's hash of the request
	cache *cache[authDecision]
	br    *breaker
	c     counters
}

type authDecision struct {
	result string // allow, deny, ignore
	id     auth.Identity
}

// NewAuthenticator checks cfg and returns an Authenticator.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if err := cfg.Endpoint.check(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = env.RealClock{}
	}
	cfg.Cache.defaults()
	a := &Authenticator{cfg: cfg, key: make([]byte, 32), cache: newCache[authDecision](cfg.Cache.Size),
		br: newBreaker(cfg.Clock, cfg.Breaker.Failures, cfg.Breaker.Cooldown)}
	if _, err := rand.Read(a.key); err != nil {
		return nil, fmt.Errorf("webhook: cache key: %w", err)
	}
	return a, nil
}

// authRequest is the request body.
type authRequest struct {
	ClientID      string `json:"clientid"`
	Username      string `json:"username"`
	Password      []byte `json:"password"` // base64
	Listener      string `json:"listener"`
	Remote        string `json:"remote"`
	CertSubject   string `json:"cert_subject"`
	DefaultTenant string `json:"default_tenant"`
}

// authResponse is the response body.
type authResponse struct {
	Result    string     `json:"result"`
	Tenant    string     `json:"tenant"`
	User      string     `json:"user"`
	ACL       *acl.Claim `json:"acl"`
	ExpiresAt int64      `json:"expires_at"`
	Reason    int        `json:"reason"`
}

// cacheKey is a keyed hash of everything the decision depends on (not the
// remote address).
func (a *Authenticator) cacheKey(req *broker.AuthRequest) [sha256.Size]byte {
	h := hmac.New(sha256.New, a.key)
	var n [8]byte
	field := func(s []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	field([]byte(req.ClientID))
	field([]byte(req.Username))
	if req.HasUser {
		field([]byte{1})
	} else {
		field([]byte{0})
	}
	field(req.Password)
	field([]byte(req.Listener))
	field([]byte(req.CertSubject))
	field([]byte(req.DefaultTenant))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Decide implements auth.Decider: ok is false when the endpoint answered
// "ignore".
func (a *Authenticator) Decide(req *broker.AuthRequest) (auth.Identity, bool) {
	return a.decide(context.Background(), req)
}

// Authenticate implements broker.Authenticator ("ignore" is refused like
// an unknown user).
func (a *Authenticator) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	id := auth.Identify(a, req)
	return id.Result()
}

func unavailable() auth.Identity {
	return auth.Identity{AuthResult: broker.AuthResult{Code: packet.ServerUnavailable}}
}

func (d authDecision) out() (auth.Identity, bool) {
	return d.id, d.result != "ignore"
}

func (a *Authenticator) decide(ctx context.Context, req *broker.AuthRequest) (auth.Identity, bool) {
	k := a.cacheKey(req)
	now := a.cfg.Clock.Now()
	d, found, fresh := a.cache.get(k[:], now)
	if found && fresh {
		a.c.hits.Add(1)
		return d.out()
	}
	a.c.misses.Add(1)
	fallback := func() (auth.Identity, bool) {
		if found && d.result == "allow" && a.cfg.Breaker.WhenOpen == AllowCached && !d.id.Expired(now) {
			a.c.stale.Add(1)
			return d.out()
		}
		return unavailable(), true
	}
	if !a.br.allow() {
		a.c.rejected.Add(1)
		return fallback()
	}
	a.c.requests.Add(1)
	nd, err := a.call(ctx, req)
	if err != nil {
		a.c.errors.Add(1)
		a.br.failure()
		return fallback()
	}
	a.br.success()
	ttl := a.cfg.Cache.DenyTTL
	if nd.result == "allow" {
		ttl = a.cfg.Cache.AllowTTL
	}
	exp := now.Add(ttl)
	if !nd.id.Expires.IsZero() && nd.id.Expires.Before(exp) {
		exp = nd.id.Expires
	}
	a.cache.put(k[:], nd, exp)
	return nd.out()
}

// call asks the endpoint. A response that does not make sense is an error.
func (a *Authenticator) call(ctx context.Context, req *broker.AuthRequest) (authDecision, error) {
	body, err := json.Marshal(authRequest{ClientID: req.ClientID, Username: req.Username, Password: req.Password,
		Listener: req.Listener, Remote: req.Remote, CertSubject: req.CertSubject, DefaultTenant: req.DefaultTenant})
	if err != nil {
		return authDecision{}, err
	}
	var resp authResponse
	if err := a.cfg.post(ctx, body, &resp); err != nil {
		return authDecision{}, err
	}
	d := authDecision{result: resp.Result}
	switch resp.Result {
	case "allow":
		tenant, user := broker.TenantOf(req.Username, req.DefaultTenant)
		if resp.Tenant != "" {
			tenant = resp.Tenant
		}
		if resp.User != "" {
			user = resp.User
		}
		d.id.AuthResult = broker.AuthResult{Code: packet.Success, Tenant: tenant, User: user}
		if resp.ExpiresAt > 0 {
			d.id.Expires = time.Unix(resp.ExpiresAt, 0)
		}
		if resp.ACL != nil {
			rules, err := resp.ACL.Compile(a.cfg.ACLExclusive)
			if err != nil {
				return authDecision{}, fmt.Errorf("webhook: acl: %w", err)
			}
			d.id.ACL = rules
		}
	case "deny":
		code := packet.BadUserNameOrPassword
		if r := packet.ReasonCode(resp.Reason); resp.Reason > 0 && resp.Reason < 256 && r.IsError() && r.ValidFor(packet.CONNACK) {
			code = r
		}
		d.id.AuthResult = broker.AuthResult{Code: code}
	case "ignore":
	default:
		return authDecision{}, errors.New("webhook: result must be allow, deny or ignore")
	}
	return d, nil
}

// Stats returns the counters.
func (a *Authenticator) Stats() Stats { return a.c.stats(a.br, a.cache.len()) }
