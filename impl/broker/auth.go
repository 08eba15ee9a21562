package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/acl"

	"github.com/skybridge-mq/skybridge/impl/packet"
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

// AllowAll accepts every client. The tenant comes from a user name of the
// form "tenant/user", else the listener's default tenant.
type AllowAll struct{}

// Authenticate implements Authenticator.
func (AllowAll) Authenticate(req *AuthRequest) AuthResult {
	tenant, user := TenantOf(req.Username, req.DefaultTenant)
	return AuthResult{Code: packet.Success, Tenant: tenant, User: user}
}

// TenantOf splits a "tenant/user" user name; a name without '/' belongs to
// def.
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
