package auth

import (
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// JWTKey is one key tokens may be signed with.
type JWTKey struct {
	// ID, when set, is matched against a token's "kid" header.
	ID string
	// Secret is an HS256 shared secret (at least 32 bytes). Set either
	// Secret or PublicKeyPEM.
	Secret []byte
	// PublicKeyPEM is an RSA public key (RS256) or a P-256 ECDSA public key
	// (ES256), PKIX or PKCS#1 "PUBLIC KEY" PEM, or a certificate.
	PublicKeyPEM []byte
}

// JWTOptions configure JWT.
type JWTOptions struct {
	Keys []JWTKey
	// Clock tells the time for "exp" and "nbf". Required.
	Clock env.Clock
	// Leeway is the clock skew tolerated on "exp" and "nbf" (0: 10s).
	Leeway time.Duration
	// TenantClaim names the claim with the client's tenant (default
	// "tenant"). A token without it belongs to the listener's default
	// tenant, unless TenantRequired.
	TenantClaim    string
	TenantRequired bool
	// ACLClaim names the claim with the client's own rules (default "acl"),
	// in acl.Claim's JSON form. With ACLExclusive, what the claim does not
	// grant is denied instead of being left to the tenant's rules.
	ACLClaim     string
	ACLExclusive bool
	// RequireExpiry refuses tokens without "exp".
	RequireExpiry bool
	// Issuer and Audience, when set, must match "iss" and "aud".
	Issuer   string
	Audience string
	// Method, when set, also offers JWT as an enhanced-authentication
	// method of that name (for example "JWT"): the CONNECT's (and a
	// re-authentication's) Authentication Data is the token.
	Method string
}

// MaxTokenSize bounds the tokens JWT parses.
const MaxTokenSize = 16 << 10

// JWT authenticates clients whose password is a JSON Web Token, signed
// with HS256, RS256 or ES256 by one of the configured keys. The token's
// "sub" is the user (required); the tenant and optional ACL come from
// claims; "exp" becomes Identity.Expires. The CONNECT's user name may be
// empty, the subject, or "tenant/subject"; anything else is refused.
type JWT struct {
	opts   JWTOptions
	keys   atomic.Pointer[[]verifyKey]
	parser *jwt.Parser
}

type verifyKey struct {
	id  string
	alg string
	key any
}

// NewJWT checks opts and returns a JWT authenticator.
func NewJWT(opts JWTOptions) (*JWT, error) {
	if opts.Clock == nil {
		return nil, errors.New("auth: JWT needs a clock")
	}
	if opts.Leeway == 0 {
		opts.Leeway = 10 * time.Second
	}
	if opts.Leeway < 0 {
		return nil, errors.New("auth: JWT leeway is negative")
	}
	if opts.TenantClaim == "" {
		opts.TenantClaim = "tenant"
	}
	if opts.ACLClaim == "" {
		opts.ACLClaim = "acl"
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "RS256", "ES256"}),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Clock.Now),
	}
	if opts.RequireExpiry {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	j := &JWT{opts: opts, parser: jwt.NewParser(popts...)}
	if err := j.ReplaceKeys(opts.Keys); err != nil {
		return nil, err
	}
	return j, nil
}

// ReplaceKeys swaps the verification keys atomically (key rotation). On
// error the keys in force stay.
func (j *JWT) ReplaceKeys(keys []JWTKey) error {
	if len(keys) == 0 {
		return errors.New("auth: JWT needs at least one key")
	}
	out := make([]verifyKey, 0, len(keys))
	for i, k := range keys {
		vk, err := loadKey(k)
		if err != nil {
			return fmt.Errorf("auth: JWT key %d (%q): %w", i, k.ID, err)
		}
		out = append(out, vk)
	}
	j.keys.Store(&out)
	return nil
}

func loadKey(k JWTKey) (verifyKey, error) {
	vk := verifyKey{id: k.ID}
	switch {
	case len(k.Secret) > 0 && len(k.PublicKeyPEM) > 0:
		return vk, errors.New("set either a secret or a public key, not both")
	case len(k.Secret) > 0:
		if len(k.Secret) < 32 {
			return vk, errors.New("an HS256 secret must be at least 32 bytes")
		}
		vk.alg, vk.key = "HS256", append([]byte(nil), k.Secret...)
	case len(k.PublicKeyPEM) > 0:
		if rk, err := jwt.ParseRSAPublicKeyFromPEM(k.PublicKeyPEM); err == nil {
			if rk.N.BitLen() < 2048 {
				return vk, errors.New("an RSA key must have at least 2048 bits")
			}
			vk.alg, vk.key = "RS256", rk
			break
		}
		ek, err := jwt.ParseECPublicKeyFromPEM(k.PublicKeyPEM)
		if err != nil {
			return vk, errors.New("not an RSA or ECDSA public key in PEM")
		}
		if ek.Curve != elliptic.P256() {
			return vk, errors.New("an ECDSA key must be on P-256 (ES256)")
		}
		vk.alg, vk.key = "ES256", ek
	default:
		return vk, errors.New("no secret and no public key")
	}
	return vk, nil
}

// keyfunc offers the keys of the token's algorithm: those whose ID is the
// token's "kid" when one matches, else those without an ID (and, for a
// token without "kid", all of them).
func (j *JWT) keyfunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	keys := *j.keys.Load()
	var byID, anon []jwt.VerificationKey
	for _, k := range keys {
		if k.alg != alg {
			continue
		}
		switch {
		case kid != "" && k.id == kid:
			byID = append(byID, k.key)
		case kid == "" || k.id == "":
			anon = append(anon, k.key)
		}
	}
	if len(byID) > 0 {
		return jwt.VerificationKeySet{Keys: byID}, nil
	}
	if len(anon) > 0 {
		return jwt.VerificationKeySet{Keys: anon}, nil
	}
	return nil, errors.New("no key for this token")
}

// looksLikeJWT reports whether p has the shape of a compact JWS: three
// base64url parts, the first two non-empty (an unsigned token is still
// recognised, and refused).
func looksLikeJWT(p []byte) bool {
	dots := 0
	partLen := 0
	for _, c := range p {
		switch {
		case c == '.':
			if partLen == 0 {
				return false
			}
			dots++
			partLen = 0
			if dots > 2 {
				return false
			}
			continue
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
		default:
			return false
		}
		partLen++
	}
	return dots == 2
}

// Decide implements Decider: a client whose password has the shape of a
// JWT is recognised and its token verified.
func (j *JWT) Decide(req *broker.AuthRequest) (Identity, bool) {
	if !looksLikeJWT(req.Password) {
		return Identity{}, false
	}
	return j.Verify(req.Password, req), true
}

// Authenticate implements broker.Authenticator.
func (j *JWT) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	if id, ok := j.Decide(req); ok {
		return id.Result()
	}
	return broker.AuthResult{Code: packet.BadUserNameOrPassword}
}

// Verify checks token for the client of req and returns its identity:
// refused with 0x86 for a token that does not verify, has expired, is not
// yet valid, has no subject or does not belong to the CONNECT's user name;
// 0x87 for a valid token whose tenant is missing (TenantRequired) or whose
// ACL claim does not compile.
func (j *JWT) Verify(token []byte, req *broker.AuthRequest) Identity {
	if len(token) > MaxTokenSize {
		return refused(packet.BadUserNameOrPassword)
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(string(token), claims, j.keyfunc); err != nil {
		return refused(packet.BadUserNameOrPassword)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return refused(packet.BadUserNameOrPassword)
	}
	tenant, _ := claims[j.opts.TenantClaim].(string)
	if tenant == "" {
		if j.opts.TenantRequired {
			return refused(packet.NotAuthorized)
		}
		tenant = req.DefaultTenant
	}
	if req.HasUser && req.Username != "" && req.Username != sub && req.Username != tenant+"/"+sub {
		return refused(packet.BadUserNameOrPassword)
	}
	id := accepted(tenant, sub)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time
	}
	if raw, ok := claims[j.opts.ACLClaim]; ok && raw != nil {
		rules, err := compileClaim(raw, j.opts.ACLExclusive)
		if err != nil {
			return refused(packet.NotAuthorized)
		}
		id.ACL = rules
	}
	return id
}

// compileClaim turns a decoded JSON value into rules.
func compileClaim(raw any, exclusive bool) (*acl.Rules, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var c acl.Claim
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	return c.Compile(exclusive)
}

// Begin implements broker.EnhancedAuthenticator for opts.Method: a
// one-step exchange whose data is the token.
func (j *JWT) Begin(method string, req *broker.AuthRequest) (broker.Exchange, bool) {
	if j.opts.Method == "" || method != j.opts.Method {
		return nil, false
	}
	x := &jwtExchange{j: j}
	if req != nil {
		x.req = *req
	}
	return x, true
}

type jwtExchange struct {
	j    *JWT
	req  broker.AuthRequest
	done bool
	id   Identity
}

// Step implements broker.Exchange.
func (x *jwtExchange) Step(data []byte) ([]byte, bool, packet.ReasonCode) {
	if x.done {
		return nil, false, packet.ProtocolError
	}
	x.done = true
	x.id = x.j.Verify(data, &x.req)
	if x.id.Code.IsError() {
		return nil, false, x.id.Code
	}
	return nil, true, packet.Success
}

// Result implements broker.Exchange.
func (x *jwtExchange) Result() broker.AuthResult {
	if !x.done {
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	return x.id.Result()
}

// Identity is the identity the exchange established (see IdentityOf).
func (x *jwtExchange) Identity() Identity {
	if !x.done {
		return refused(packet.NotAuthorized)
	}
	return x.id
}
