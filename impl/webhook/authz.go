package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/env"
)

// AuthzConfig configures an HTTP Authorizer.
type AuthzConfig struct {
	Endpoint
	Cache   CacheConfig
	Breaker BreakerConfig
	// Clock reads cache expiry and the breaker's cooldown (nil: real time).
	Clock env.Clock
}

// Authorizer asks an HTTP endpoint whether a client may publish or
// subscribe. It implements acl.Authorizer; it is safe for concurrent use.
// A cache hit costs a map lookup and no allocation; a miss blocks for at
// most the request timeout.
type Authorizer struct {
	cfg   AuthzConfig
	cache *cache[bool]
	br    *breaker
	c     counters
	bufs  sync.Pool
}

// NewAuthorizer checks cfg and returns an Authorizer.
func NewAuthorizer(cfg AuthzConfig) (*Authorizer, error) {
	if err := cfg.Endpoint.check(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = env.RealClock{}
	}
	cfg.Cache.defaults()
	a := &Authorizer{cfg: cfg, cache: newCache[bool](cfg.Cache.Size),
		br: newBreaker(cfg.Clock, cfg.Breaker.Failures, cfg.Breaker.Cooldown)}
	a.bufs.New = func() any { b := make([]byte, 0, 256); return &b }
	return a, nil
}

type authzRequest struct {
	Tenant   string `json:"tenant"`
	User     string `json:"user"`
	ClientID string `json:"clientid"`
	Action   string `json:"action"`
	Topic    string `json:"topic"`
	Retain   bool   `json:"retain"`
}

type authzResponse struct {
	Result string `json:"result"`
}

// CanPublish implements acl.Authorizer.
func (a *Authorizer) CanPublish(c *acl.Client, topic []byte, retain bool) bool {
	action := "publish"
	if retain {
		action = "retain"
	}
	return a.check(c, action, topic)
}

// CanSubscribe implements acl.Authorizer.
func (a *Authorizer) CanSubscribe(c *acl.Client, filter []byte) bool {
	return a.check(c, "subscribe", filter)
}

func appendField(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func (a *Authorizer) check(c *acl.Client, action string, topic []byte) bool {
	if c == nil {
		return false
	}
	bp := a.bufs.Get().(*[]byte)
	defer a.bufs.Put(bp)
	k := (*bp)[:0]
	k = appendField(k, c.Tenant)
	k = appendField(k, c.User)
	k = appendField(k, c.ClientID)
	k = appendField(k, action)
	k = append(k, topic...)
	*bp = k
	now := a.cfg.Clock.Now()
	allowed, found, fresh := a.cache.get(k, now)
	if found && fresh {
		a.c.hits.Add(1)
		return allowed
	}
	a.c.misses.Add(1)
	fallback := func() bool {
		if found && allowed && a.cfg.Breaker.WhenOpen == AllowCached {
			a.c.stale.Add(1)
			return true
		}
		return false
	}
	if !a.br.allow() {
		a.c.rejected.Add(1)
		return fallback()
	}
	a.c.requests.Add(1)
	res, err := a.call(c, action, topic)
	if err != nil {
		a.c.errors.Add(1)
		a.br.failure()
		return fallback()
	}
	a.br.success()
	ttl := a.cfg.Cache.DenyTTL
	if res {
		ttl = a.cfg.Cache.AllowTTL
	}
	a.cache.put(k, res, now.Add(ttl))
	return res
}

func (a *Authorizer) call(c *acl.Client, action string, topic []byte) (bool, error) {
	r := authzRequest{Tenant: c.Tenant, User: c.User, ClientID: c.ClientID, Action: action, Topic: string(topic)}
	if action == "retain" {
		r.Action, r.Retain = "publish", true
	}
	body, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	var resp authzResponse
	if err := a.cfg.post(context.Background(), body, &resp); err != nil {
		return false, err
	}
	switch resp.Result {
	case "allow":
		return true, nil
	case "deny":
		return false, nil
	}
	return false, errors.New("webhook: result must be allow or deny")
}

// Stats returns the counters.
func (a *Authorizer) Stats() Stats { return a.c.stats(a.br, a.cache.len()) }
