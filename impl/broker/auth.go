package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/message"
	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/session"
	tenantpkg "github.com/skybridge-mq/skybridge/impl/tenant"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// AuthRequest is what an Authenticator decides on.
type AuthRequest struct {
	ClientID string
	Username string // empty when the CONNECT carried none
	HasUser  bool
	Password []byte
	Listener string // the name of the listener the client came through
	// DefaultTenant is the listener's tenant for clients that name none.
	DefaultTenant string
	Remote        string
	// CertSubject is the subject of a verified TLS client certificate.
	CertSubject string
}

// AuthResult is an Authenticator's decision.
type AuthResult struct {
	// Code is Success to accept, or the CONNACK reason to refuse with
	// (BadUserNameOrPassword, NotAuthorized, Banned, ...).
	Code   packet.ReasonCode
	Tenant string
	User   string
	// Expires is when the credentials stop being valid (a token's exp):
	// the broker then disconnects the client (5.0: 0x87) unless it has
	// re-authenticated. Zero: never.
	Expires time.Time
	// ACL are rules of the client's own (from a token or a webhook),
	// checked before the tenant's.
	ACL *acl.Rules
}

// Authenticator decides whether a client may connect and in which tenant.
// It may block (an HTTP call): it runs on the connection's own reader.
type Authenticator interface {
	Authenticate(req *AuthRequest) AuthResult
}

// AllowAll accepts every client, in the listener's default tenant: nobody
// vouched for a tenant named in the user name, so a user name such as
// "acme/mallory" is just a user name (anonymous access is single-tenant).
type AllowAll struct{}

// Authenticate implements Authenticator.
func (AllowAll) Authenticate(req *AuthRequest) AuthResult {
	return AuthResult{Code: packet.Success, Tenant: req.DefaultTenant, User: req.Username}
}

// TenantFromUsername accepts every client and believes the tenant a
// "tenant/user" user name claims (else the listener's default tenant). It
// checks nothing: it is for tests and the simulator, where every client is
// trusted, never for a listener that strangers reach.
type TenantFromUsername struct{}

// Authenticate implements Authenticator.
func (TenantFromUsername) Authenticate(req *AuthRequest) AuthResult {
	tenant, user := TenantOf(req.Username, req.DefaultTenant)
	return AuthResult{Code: packet.Success, Tenant: tenant, User: user}
}

// TenantOf splits a "tenant/user" user name; a name without '/' belongs to
// def. Only an authenticator that vouches for the name (a password file
// entry, a webhook's answer) may use it to pick a tenant.
func TenantOf(username, def string) (tenant, user string) {
	if t, u, ok := strings.Cut(username, "/"); ok && t != "" {
		return t, u
	}
	return def, username
}

func sortStrings(s []string) { slices.Sort(s) }

// Exchange is one enhanced-authentication conversation (5.0 AUTH packets):
// SCRAM, Kerberos, a challenge-response of your own.
type Exchange interface {
	// Step takes the client's Authentication Data and returns the data to
	// send back. done reports that the client is authenticated; a code of
	// 0x80 or above refuses it (the conversation ends).
	Step(data []byte) (reply []byte, done bool, code packet.ReasonCode)
	// Result is the identity the conversation established, once done.
	Result() AuthResult
}

// EnhancedAuthenticator starts conversations for the methods it supports.
type EnhancedAuthenticator interface {
	// Begin starts a conversation for method, or reports false when the
	// method is not supported.
	Begin(method string, req *AuthRequest) (Exchange, bool)
}

// validIdentity checks the tenant and user an authenticator returned
// (tenant.ValidName, tenant.ValidUser), whichever authenticator it was.
func validIdentity(ar *AuthResult) error {
	if err := tenantpkg.ValidName(ar.Tenant); err != nil {
		return err
	}
	return tenantpkg.ValidUser(ar.User)
}

// mayTakeOver reports whether user may take over, resume or discard the
// session s: its owner may, and with the tenant's session_takeover "any"
// every user may. The caller holds the session's lock.
func mayTakeOver(l *limits, s *session.Session, user string) bool {
	return !s.OwnerKnown || s.Owner == user || l.s.SessionTakeover == tenantpkg.TakeoverAny
}

// recheckLocked applies the authorizer to a session being resumed: the
// rules (or the user) may have changed since its subscriptions were
// granted and its messages queued. Subscriptions the user may no longer
// make are dropped (the caller removes their routes and reports them) and
// queued messages on topics the user may not read are dropped and counted.
// The caller holds e.mu.
func (b *Broker) recheckLocked(e *entry, who *acl.Client, now time.Time) (revoked []string) {
	az := b.cfg.Authorizer
	e.s.Subscriptions(func(f string, _ topic.Options) bool {
		if !az.CanSubscribe(who, []byte(f)) {
			revoked = append(revoked, f)
		}
		return true
	})
	for _, f := range revoked {
		e.s.DropSubscription(f)
	}
	readable := map[string]bool{} // per topic, for a queue of many messages on few topics
	if n := e.s.DropQueued(func(m *message.Message) bool {
		ok, seen := readable[string(m.Topic)]
		if !seen {
			ok = az.CanSubscribe(who, m.Topic)
			readable[string(m.Topic)] = ok
		}
		return !ok
	}); n > 0 {
		b.noteDrops(e.t, DropNotAuthorized, uint64(n), now)
	}
	return revoked
}
