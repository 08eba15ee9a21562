package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/config"
	"github.com/skybridge-mq/skybridge/impl/env"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

const testJWTSecret = "0123456789abcdef0123456789abcdef"

func hs256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWTExpRequiredByDefault: a token without "exp" is refused (0x86)
// unless auth.jwt.require_exp is false (docs/AUTH.md).
func TestJWTExpRequiredByDefault(t *testing.T) {
	t.Parallel()
	now := time.Now()
	noExp := hs256(t, jwt.MapClaims{"sub": "alice", "tenant": "acme"})
	withExp := hs256(t, jwt.MapClaims{"sub": "alice", "tenant": "acme", "exp": now.Add(time.Hour).Unix()})
	for _, tc := range []struct {
		name  string
		extra string
		token string
		want  packet.ReasonCode
	}{
		{"default, no exp", "", noExp, packet.BadUserNameOrPassword},
		{"default, exp", "", withExp, packet.Success},
		{"require_exp true, no exp", "    require_exp: true\n", noExp, packet.BadUserNameOrPassword},
		{"require_exp false, no exp", "    require_exp: false\n", noExp, packet.Success},
	} {
		f, err := config.Parse(strings.NewReader("auth:\n  jwt:\n    secret: " + testJWTSecret + "\n" + tc.extra))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		x, err := buildExtensions(&f, env.Real(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := x.authn.Authenticate(&broker.AuthRequest{ClientID: "c", Password: []byte(tc.token), Listener: "tcp",
			DefaultTenant: "default", Remote: "127.0.0.1:1"})
		if r.Code != tc.want {
			t.Errorf("%s: CONNACK %v, want %v", tc.name, r.Code, tc.want)
		}
		x.close()
	}
}

// TestAuthLimitsReachTheGuard: the auth.limits section configures the
// guard in front of the password file.
func TestAuthLimitsReachTheGuard(t *testing.T) {
	t.Parallel()
	hash, err := auth.HashPassword([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := auth.Line("acme", "alice", hash)
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(pw, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(strings.NewReader("auth:\n  password_file: " + pw + "\n  limits: {free_failures: 1, delay: 1m, refusal_delay: 0s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := buildExtensions(&f, env.Real(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer x.close()
	var got []packet.ReasonCode
	for range 3 {
		got = append(got, x.authn.Authenticate(&broker.AuthRequest{ClientID: "c", Username: "acme/alice", HasUser: true,
			Password: []byte("wrong"), Listener: "tcp", DefaultTenant: "default", Remote: "192.0.2.1:5"}).Code)
	}
	want := []packet.ReasonCode{packet.BadUserNameOrPassword, packet.BadUserNameOrPassword, packet.ConnectionRateExceeded}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if st := x.guard.Stats(); st.Verifications != 2 || st.SourceThrottles != 1 {
		t.Errorf("guard stats %+v", st)
	}
}
