package auth

import (
	"slices"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Identity is what an authenticator establishes: the broker's AuthResult
// and what the broker needs after CONNECT.
type Identity struct {
	broker.AuthResult
	// Expires is when the credentials stop being valid (a token's "exp");
	// the zero time means never.
	Expires time.Time
	// ACL are rules of the client's own (a token's "acl" claim, a webhook
	// answer), for acl.Client.Extra; nil when there are none.
	ACL *acl.Rules
}

// Result returns the identity as the broker takes it.
func (id *Identity) Result() broker.AuthResult {
	r := id.AuthResult
	r.Expires, r.ACL = id.Expires, id.ACL
	return r
}

// Expired reports whether the credentials have expired at now.
func (id *Identity) Expired(now time.Time) bool {
	return !id.Expires.IsZero() && !now.Before(id.Expires)
}

// Client returns the acl.Client for this identity and a client id.
func (id *Identity) Client(clientID string) acl.Client {
	return acl.Client{Tenant: id.Tenant, User: id.User, ClientID: clientID, Extra: id.ACL}
}

func refused(code packet.ReasonCode) Identity {
	return Identity{AuthResult: broker.AuthResult{Code: code}}
}

func accepted(tenant, user string) Identity {
	return Identity{AuthResult: broker.AuthResult{Code: packet.Success, Tenant: tenant, User: user}}
}

// Decider is an authenticator that can tell a client it does not know
// from one it refuses: ok false means "not mine, ask the next one"; ok
// true means id is the decision (acceptance or refusal).
type Decider interface {
	Decide(req *broker.AuthRequest) (id Identity, ok bool)
}

// notRecognised is the refusal for a client no authenticator recognised.
func notRecognised(req *broker.AuthRequest) Identity {
	if req.HasUser || len(req.Password) > 0 {
		return refused(packet.BadUserNameOrPassword)
	}
	return refused(packet.NotAuthorized)
}

// Identify authenticates req with a: through Decide when a is a Decider (a
// client it does not recognise is refused), else through Authenticate.
func Identify(a broker.Authenticator, req *broker.AuthRequest) Identity {
	if d, ok := a.(Decider); ok {
		id, ok := d.Decide(req)
		if !ok {
			return notRecognised(req)
		}
		return id
	}
	r := a.Authenticate(req)
	return Identity{AuthResult: r, Expires: r.Expires, ACL: r.ACL}
}

// IdentityOf returns the identity an enhanced-authentication exchange
// established (call it once Step reported done).
func IdentityOf(ex broker.Exchange) Identity {
	if x, ok := ex.(interface{ Identity() Identity }); ok {
		return x.Identity()
	}
	r := ex.Result()
	return Identity{AuthResult: r, Expires: r.Expires, ACL: r.ACL}
}

// Chain combines authenticators: the first Decider that recognises the
// client decides (see the package doc).
type Chain struct {
	Deciders []Decider
	// AllowAnonymous lists the listeners on which a client with neither a
	// user name nor a password, that no Decider recognised, is accepted
	// in the listener's default tenant with an empty user name.
	AllowAnonymous []string
}

// Decide implements Decider: ok is false when no member recognised the
// client and it may not connect anonymously.
func (c *Chain) Decide(req *broker.AuthRequest) (Identity, bool) {
	for _, d := range c.Deciders {
		if d == nil {
			continue
		}
		if id, ok := d.Decide(req); ok {
			return id, true
		}
	}
	if !req.HasUser && len(req.Password) == 0 && slices.Contains(c.AllowAnonymous, req.Listener) {
		return accepted(req.DefaultTenant, ""), true
	}
	return Identity{}, false
}

// Authenticate implements broker.Authenticator.
func (c *Chain) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	id := Identify(c, req)
	return id.Result()
}

// Methods serves enhanced authentication for several methods: Begin
// dispatches on the method name. It implements
// broker.EnhancedAuthenticator.
type Methods map[string]broker.EnhancedAuthenticator

// Begin implements broker.EnhancedAuthenticator.
func (m Methods) Begin(method string, req *broker.AuthRequest) (broker.Exchange, bool) {
	ea, ok := m[method]
	if !ok || ea == nil {
		return nil, false
	}
	return ea.Begin(method, req)
}
