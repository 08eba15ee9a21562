package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/acl"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	ec384    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func pubPEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

var (
	secret1 = []byte("0123456789abcdef0123456789abcdef")
	secret2 = []byte("fedcba9876543210fedcba9876543210")
	jwtT0   = time.Unix(1_800_000_000, 0)
)

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func newJWT(t testing.TB, clock env.Clock, mod func(*JWTOptions)) *JWT {
	t.Helper()
	testKeys(t)
	opts := JWTOptions{Clock: clock, Keys: []JWTKey{
		{ID: "k1", Secret: secret1},
		{ID: "k2", Secret: secret2},
		{PublicKeyPEM: pubPEM(t, &rsaKey.PublicKey)},
		{ID: "ec", PublicKeyPEM: pubPEM(t, &ecKey.PublicKey)},
	}}
	if mod != nil {
		mod(&opts)
	}
	j, err := NewJWT(opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJWT(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	j := newJWT(t, clock, nil)
	now := jwtT0.Unix()
	good := claims("sub", "alice", "tenant", "acme", "exp", now+3600)
	type res struct {
		Code         packet.ReasonCode
		Tenant, User string
		Expires      int64
	}
	ok := res{0, "acme", "alice", now + 3600}
	bad := res{Code: packet.BadUserNameOrPassword}
	tests := []struct {
		name  string
		user  string
		token string
		want  res
	}{
		{"HS256 without kid", "", sign(t, jwt.SigningMethodHS256, secret2, "", good), ok},
		{"HS256 with kid", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", good), ok},
		{"HS256 kid names another key", "", sign(t, jwt.SigningMethodHS256, secret2, "k1", good), bad},
		{"HS256 unknown kid falls back to keys without id", "", sign(t, jwt.SigningMethodHS256, secret1, "zz", good), bad},
		{"RS256 unknown kid, key without id", "", sign(t, jwt.SigningMethodRS256, rsaKey, "zz", good), ok},
		{"RS256", "", sign(t, jwt.SigningMethodRS256, rsaKey, "", good), ok},
		{"ES256", "", sign(t, jwt.SigningMethodES256, ecKey, "ec", good), ok},
		{"wrong secret", "", sign(t, jwt.SigningMethodHS256, []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "", good), bad},
		{"RS384 not accepted", "", sign(t, jwt.SigningMethodRS384, rsaKey, "", good), bad},
		{"alg none", "", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good), bad},
		{"HS256 keyed with the RSA public key (alg confusion)", "", sign(t, jwt.SigningMethodHS256, pubPEM(t, &rsaKey.PublicKey), "", good), bad},
		{"expired", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "alice", "exp", now-60)), bad},
		{"expired within the leeway", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "alice", "tenant", "acme", "exp", now-5)), res{0, "acme", "alice", now - 5}},
		{"not yet valid", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "alice", "nbf", now+60)), bad},
		{"nbf within the leeway", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "alice", "nbf", now+5)), res{0, "dflt", "alice", 0}},
		{"no subject", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("tenant", "acme")), bad},
		{"no tenant: the listener's", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "bob")), res{0, "dflt", "bob", 0}},
		{"user name is the subject", "alice", sign(t, jwt.SigningMethodHS256, secret1, "k1", good), ok},
		{"user name is tenant/subject", "acme/alice", sign(t, jwt.SigningMethodHS256, secret1, "k1", good), ok},
		{"user name is someone else", "bob", sign(t, jwt.SigningMethodHS256, secret1, "k1", good), bad},
		{"tampered payload", "", sign(t, jwt.SigningMethodHS256, secret1, "k1", good)[:40] + "x" + sign(t, jwt.SigningMethodHS256, secret1, "k1", good)[41:], bad},
	}
	for _, tc := range tests {
		r := req(tc.user, tc.token)
		id, recognised := j.Decide(r)
		if !recognised {
			t.Errorf("%s: not recognised", tc.name)
			continue
		}
		got := res{id.Code, id.Tenant, id.User, 0}
		if !id.Expires.IsZero() {
			got.Expires = id.Expires.Unix()
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
		if ar := j.Authenticate(r); ar != id.Result() {
			t.Errorf("%s: Authenticate %+v, Decide %+v", tc.name, ar, id.Result())
		}
	}
	// Not a JWT: not recognised, and refused when used alone.
	for _, pw := range []string{"", "password", "a.b", "a..c", "a.b.c.d", "a b.c.d", ".b.c"} {
		if _, ok := j.Decide(req("u", pw)); ok {
			t.Errorf("%q recognised as a JWT", pw)
		}
		if j.Authenticate(req("u", pw)).Code != packet.BadUserNameOrPassword {
			t.Errorf("%q not refused", pw)
		}
	}
	if id := j.Verify(make([]byte, MaxTokenSize+1), req("", "")); id.Code != packet.BadUserNameOrPassword {
		t.Error("an oversize token is not refused")
	}
}

// TestJWTExpiryFollowsTheClock: the same token is accepted, then refused
// once the injected clock passes its expiry and the leeway.
func TestJWTExpiryFollowsTheClock(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	j := newJWT(t, clock, func(o *JWTOptions) { o.Leeway = 2 * time.Second })
	tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "u", "exp", jwtT0.Unix()+10))
	id := j.Verify([]byte(tok), req("", ""))
	if id.Code != 0 || id.Expired(clock.Now()) {
		t.Fatalf("fresh token: %+v", id)
	}
	clock.Advance(11 * time.Second)
	if !id.Expired(clock.Now()) {
		t.Error("Identity.Expired false after exp")
	}
	if j.Verify([]byte(tok), req("", "")).Code != 0 {
		t.Error("refused within the leeway")
	}
	clock.Advance(2 * time.Second)
	if j.Verify([]byte(tok), req("", "")).Code != packet.BadUserNameOrPassword {
		t.Error("accepted after exp + leeway")
	}
}

func TestJWTOptions(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	now := jwtT0.Unix()
	strict := newJWT(t, clock, func(o *JWTOptions) {
		o.RequireExpiry, o.TenantRequired, o.Issuer, o.Audience = true, true, "https://issuer", "mqtt"
		o.TenantClaim = "org"
	})
	full := claims("sub", "u", "org", "acme", "exp", now+60, "iss", "https://issuer", "aud", "mqtt")
	for _, tc := range []struct {
		name string
		drop string
		code packet.ReasonCode
	}{
		{"all there", "", 0},
		{"no exp", "exp", packet.BadUserNameOrPassword},
		{"no iss", "iss", packet.BadUserNameOrPassword},
		{"no aud", "aud", packet.BadUserNameOrPassword},
		{"no tenant", "org", packet.NotAuthorized},
	} {
		c := claims()
		for k, v := range full {
			if k != tc.drop {
				c[k] = v
			}
		}
		id := strict.Verify([]byte(sign(t, jwt.SigningMethodHS256, secret1, "k1", c)), req("", ""))
		if id.Code != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, id.Code, tc.code)
		}
		if tc.code == 0 && id.Tenant != "acme" {
			t.Errorf("%s: tenant %q from claim org", tc.name, id.Tenant)
		}
	}
	testKeys(t)
	for _, tc := range []struct {
		name string
		opts JWTOptions
	}{
		{"no clock", JWTOptions{Keys: []JWTKey{{Secret: secret1}}}},
		{"no keys", JWTOptions{Clock: clock}},
		{"short secret", JWTOptions{Clock: clock, Keys: []JWTKey{{Secret: []byte("short")}}}},
		{"both", JWTOptions{Clock: clock, Keys: []JWTKey{{Secret: secret1, PublicKeyPEM: pubPEM(t, &ecKey.PublicKey)}}}},
		{"bad PEM", JWTOptions{Clock: clock, Keys: []JWTKey{{PublicKeyPEM: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}}}},
		{"P-384", JWTOptions{Clock: clock, Keys: []JWTKey{{PublicKeyPEM: pubPEM(t, &ec384.PublicKey)}}}},
		{"empty key", JWTOptions{Clock: clock, Keys: []JWTKey{{ID: "x"}}}},
		{"negative leeway", JWTOptions{Clock: clock, Leeway: -1, Keys: []JWTKey{{Secret: secret1}}}},
	} {
		if _, err := NewJWT(tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestJWTACL(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	j := newJWT(t, clock, nil)
	x := newJWT(t, clock, func(o *JWTOptions) { o.ACLExclusive = true })
	set, err := acl.NewSet(acl.Config{Tenants: map[string][]acl.RuleConfig{
		"acme": {{Permission: "allow", Action: "all", Topics: []string{"#"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "u", "tenant", "acme",
		"acl", map[string]any{
			"publish":   []string{"dev/%c/up"},
			"subscribe": []string{"dev/%c/down/#"},
			"rules":     []map[string]any{{"permission": "deny", "action": "publish", "topics": []string{"dev/+/up"}, "clients": []string{"evil"}}},
		}))
	id := j.Verify([]byte(tok), req("", ""))
	xid := x.Verify([]byte(tok), req("", ""))
	if id.Code != 0 || id.ACL == nil || xid.ACL == nil {
		t.Fatalf("identity %+v", id)
	}
	c1, evil, xc := id.Client("c1"), id.Client("evil"), xid.Client("c1")
	got := []bool{
		set.CanPublish(&c1, []byte("dev/c1/up"), false),
		set.CanPublish(&evil, []byte("dev/evil/up"), false), // the claim's own deny rule
		set.CanPublish(&c1, []byte("other"), false),         // falls to the tenant's allow
		set.CanPublish(&xc, []byte("dev/c1/up"), false),
		set.CanPublish(&xc, []byte("other"), false), // exclusive: denied
		set.CanSubscribe(&xc, []byte("dev/c1/down/x")),
	}
	if d := cmp.Diff([]bool{true, false, true, true, false, true}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, badACL := range []any{"publish everything", map[string]any{"publish": []string{"a/#/b"}}, map[string]any{"pub": []string{"a"}}} {
		tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "u", "acl", badACL))
		if code := j.Verify([]byte(tok), req("", "")).Code; code != packet.NotAuthorized {
			t.Errorf("acl %v: %v, want 0x87", badACL, code)
		}
	}
}

func TestJWTEnhancedAndRotation(t *testing.T) {
	t.Parallel()
	clock := env.NewManualClock(jwtT0)
	j := newJWT(t, clock, func(o *JWTOptions) { o.Method = "JWT" })
	if _, ok := newJWT(t, clock, nil).Begin("JWT", &broker.AuthRequest{}); ok {
		t.Error("the method is offered without Method")
	}
	if _, ok := j.Begin("SCRAM-SHA-256", &broker.AuthRequest{}); ok {
		t.Error("another method accepted")
	}
	tok := sign(t, jwt.SigningMethodHS256, secret1, "k1", claims("sub", "u", "tenant", "acme", "exp", jwtT0.Unix()+60))
	ex, ok := Methods{"JWT": j}.Begin("JWT", &broker.AuthRequest{DefaultTenant: "d"})
	if !ok {
		t.Fatal("not offered")
	}
	if ex.Result().Code == 0 {
		t.Error("accepts before a step")
	}
	reply, done, code := ex.Step([]byte(tok))
	if reply != nil || !done || code != 0 {
		t.Fatalf("step: %q %v %v", reply, done, code)
	}
	if id := IdentityOf(ex); id.Tenant != "acme" || id.Expires.Unix() != jwtT0.Unix()+60 {
		t.Errorf("identity %+v", id)
	}
	if _, _, code := ex.Step([]byte(tok)); code != packet.ProtocolError {
		t.Errorf("second step: %v", code)
	}
	ex, _ = j.Begin("JWT", &broker.AuthRequest{})
	if _, done, code := ex.Step([]byte("garbage")); done || code != packet.BadUserNameOrPassword {
		t.Errorf("bad token: %v %v", done, code)
	}
	// Rotation: after ReplaceKeys only the new key verifies.
	if err := j.ReplaceKeys(nil); err == nil {
		t.Error("no keys accepted")
	}
	if err := j.ReplaceKeys([]JWTKey{{ID: "k3", Secret: secret2}}); err != nil {
		t.Fatal(err)
	}
	if j.Verify([]byte(tok), req("", "")).Code == 0 {
		t.Error("a token of a removed key verifies")
	}
	if j.Verify([]byte(sign(t, jwt.SigningMethodHS256, secret2, "k3", claims("sub", "u"))), req("", "")).Code != 0 {
		t.Error("a token of the new key is refused")
	}
}

func BenchmarkJWT(b *testing.B) {
	clock := env.NewManualClock(jwtT0)
	j := newJWT(b, clock, nil)
	c := claims("sub", "alice", "tenant", "acme", "exp", jwtT0.Unix()+3600,
		"acl", map[string]any{"publish": []string{"dev/%c/up"}})
	for _, tc := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", jwt.SigningMethodHS256, secret1},
		{"RS256", jwt.SigningMethodRS256, rsaKey},
		{"ES256", jwt.SigningMethodES256, ecKey},
	} {
		r := req("", sign(b, tc.m, tc.key, "", c))
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if j.Authenticate(r).Code != 0 {
					b.Fatal("refused")
				}
			}
		})
	}
}
