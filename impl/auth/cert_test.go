package auth

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

func TestParseDN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []Attribute
	}{
		{"CN=sensor-1,OU=plant,O=acme,C=DE", []Attribute{{"CN", "sensor-1"}, {"OU", "plant"}, {"O", "acme"}, {"C", "DE"}}},
		{`CN=a\,b\+c\"d\\e\<f\>g\;h`, []Attribute{{"CN", `a,b+c"d\e<f>g;h`}}},
		{`CN=\ lead and trail\ `, []Attribute{{"CN", " lead and trail "}}},
		{`CN=\#hash`, []Attribute{{"CN", "#hash"}}},
		{`CN=x+UID=7,O=o`, []Attribute{{"CN", "x"}, {"UID", "7"}, {"O", "o"}}},
		{`CN=caf\C3\A9`, []Attribute{{"CN", "café"}}},
		{`CN = spaced , O = acme`, []Attribute{{"CN", "spaced"}, {"O", "acme"}}},
		{`CN="quoted, value";O=x`, []Attribute{{"CN", "quoted, value"}, {"O", "x"}}},
		{`1.2.3.4=#0c03616263,CN=x`, []Attribute{{"1.2.3.4", "#0c03616263"}, {"CN", "x"}}},
		{`CN=a=b`, []Attribute{{"CN", "a=b"}}},
		{`CN=`, []Attribute{{"CN", ""}}},
	}
	for _, tc := range tests {
		got, err := ParseDN(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, d)
		}
	}
	for _, bad := range []string{"", "CN", "=x", "CN=a,", `CN=a\`, `CN="open`, `CN="q"x`, "1.2=#zz", `CN="a\`} {
		if got, err := ParseDN(bad); err == nil {
			t.Errorf("%q accepted: %v", bad, got)
		}
	}
}

// TestParseDNOfPkix: what crypto/x509/pkix writes, ParseDN reads back.
func TestParseDNOfPkix(t *testing.T) {
	t.Parallel()
	n := pkix.Name{CommonName: " #sensor, 1+2 ", Organization: []string{`a"c;m<e>\`}, Country: []string{"DE"},
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: "x"}}}
	attrs, err := ParseDN(n.String())
	if err != nil {
		t.Fatalf("%s: %v", n.String(), err)
	}
	for _, want := range []Attribute{{"CN", n.CommonName}, {"O", n.Organization[0]}, {"C", "DE"}, {"2.5.4.3", n.CommonName}, {"commonName", n.CommonName}} {
		if v, ok := lookupAttr(attrs, want.Type); !ok || v != want.Value {
			t.Errorf("%s: %q=%q, want %q (from %s)", want.Type, want.Type, v, want.Value, n.String())
		}
	}
}

func FuzzParseDN(f *testing.F) {
	f.Add("sensor-1", "acme", `CN=a\,b,O=c`)
	f.Add(" #x ", `"\<>;+,`, `CN="q\"",1.2=#00`)
	f.Fuzz(func(t *testing.T, cn, org, raw string) {
		_, _ = ParseDN(raw)
		if cn == "" || org == "" || !utf8.ValidString(cn) || !utf8.ValidString(org) {
			return
		}
		n := pkix.Name{CommonName: cn, Organization: []string{org}}
		attrs, err := ParseDN(n.String())
		if err != nil {
			t.Fatalf("%q: %v", n.String(), err)
		}
		if v, _ := lookupAttr(attrs, "CN"); v != cn {
			t.Fatalf("%q: CN %q, want %q", n.String(), v, cn)
		}
		if v, _ := lookupAttr(attrs, "O"); v != org {
			t.Fatalf("%q: O %q, want %q", n.String(), v, org)
		}
	})
}

func TestCertAuth(t *testing.T) {
	t.Parallel()
	subject := "CN=sensor-1,OU=line-3,O=acme,C=DE"
	certReq := func(subject, listener string) *broker.AuthRequest {
		r := req("ignored", "ignored")
		r.CertSubject, r.Listener = subject, listener
		return r
	}
	type res struct {
		Code         packet.ReasonCode
		Tenant, User string
		Recognised   bool
	}
	tests := []struct {
		name string
		c    CertAuth
		r    *broker.AuthRequest
		want res
	}{
		{"CN, listener tenant", CertAuth{}, certReq(subject, "tls"), res{0, "dflt", "sensor-1", true}},
		{"tenant from O", CertAuth{TenantAttr: "O"}, certReq(subject, "tls"), res{0, "acme", "sensor-1", true}},
		{"fixed tenant wins", CertAuth{TenantAttr: "O", Tenant: "fixed"}, certReq(subject, "tls"), res{0, "fixed", "sensor-1", true}},
		{"user from OU", CertAuth{UserAttr: "ou"}, certReq(subject, "tls"), res{0, "dflt", "line-3", true}},
		{"no certificate", CertAuth{}, certReq("", "tls"), res{0x87, "", "", false}},
		{"other listener", CertAuth{Listeners: []string{"mtls"}}, certReq(subject, "tls"), res{0x87, "", "", false}},
		{"its listener", CertAuth{Listeners: []string{"mtls"}}, certReq(subject, "mtls"), res{0, "dflt", "sensor-1", true}},
		{"missing user attribute", CertAuth{UserAttr: "SERIALNUMBER"}, certReq(subject, "tls"), res{0x87, "", "", true}},
		{"missing tenant attribute", CertAuth{TenantAttr: "L"}, certReq(subject, "tls"), res{0x87, "", "", true}},
		{"unparsable subject", CertAuth{}, certReq("garbage", "tls"), res{0x87, "", "", true}},
	}
	for _, tc := range tests {
		_, ok := tc.c.Decide(tc.r)
		ar := tc.c.Authenticate(tc.r)
		if d := cmp.Diff(tc.want, res{ar.Code, ar.Tenant, ar.User, ok}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
