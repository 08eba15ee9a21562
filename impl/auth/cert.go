package auth

import (
	"encoding/hex"
	"errors"
	"slices"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// CertAuth authenticates clients by their verified TLS client certificate
// (the runtime verified it against the listener's client CA; the broker
// passes its subject as AuthRequest.CertSubject, in the RFC 4514 form of
// crypto/x509/pkix.Name.String, e.g. "CN=sensor-1,OU=plant,O=acme,C=DE").
//
// The user is the subject attribute UserAttr (default "CN"). The tenant is
// Tenant when set, else the attribute TenantAttr when set, else the
// listener's default tenant. A certificate without the attribute it needs
// is refused with 0x87. The CONNECT's user name and password are ignored.
type CertAuth struct {
	UserAttr   string
	TenantAttr string
	Tenant     string
	// Listeners, when not empty, limits CertAuth to clients of these
	// listeners; elsewhere a certificate is not looked at.
	Listeners []string
}

// Decide implements Decider: a client with a certificate (on one of
// Listeners) is recognised.
func (c *CertAuth) Decide(req *broker.AuthRequest) (Identity, bool) {
	if req.CertSubject == "" || (len(c.Listeners) > 0 && !slices.Contains(c.Listeners, req.Listener)) {
		return Identity{}, false
	}
	attrs, err := ParseDN(req.CertSubject)
	if err != nil {
		return refused(packet.NotAuthorized), true
	}
	ua := c.UserAttr
	if ua == "" {
		ua = "CN"
	}
	user, ok := lookupAttr(attrs, ua)
	if !ok || user == "" {
		return refused(packet.NotAuthorized), true
	}
	tenant := c.Tenant
	if tenant == "" && c.TenantAttr != "" {
		t, ok := lookupAttr(attrs, c.TenantAttr)
		if !ok || t == "" {
			return refused(packet.NotAuthorized), true
		}
		tenant = t
	}
	if tenant == "" {
		tenant = req.DefaultTenant
	}
	return accepted(tenant, user), true
}

// Authenticate implements broker.Authenticator: a client without a
// certificate is refused with 0x87.
func (c *CertAuth) Authenticate(req *broker.AuthRequest) broker.AuthResult {
	if id, ok := c.Decide(req); ok {
		return id.Result()
	}
	return broker.AuthResult{Code: packet.NotAuthorized}
}

// Attribute is one attribute of a distinguished name.
type Attribute struct {
	Type  string // as written: "CN", "O", or a dotted OID
	Value string // unescaped
}

// attrAliases maps the long names some tools print to the short ones.
var attrAliases = map[string]string{
	"COMMONNAME": "CN", "ORGANIZATIONNAME": "O", "ORGANIZATIONALUNITNAME": "OU",
	"COUNTRYNAME": "C", "LOCALITYNAME": "L", "STATEORPROVINCENAME": "ST",
	"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C", "2.5.4.7": "L",
	"2.5.4.8": "ST", "2.5.4.5": "SERIALNUMBER", "2.5.4.9": "STREET", "2.5.4.17": "POSTALCODE",
}

func canonAttr(s string) string {
	u := strings.ToUpper(s)
	if a, ok := attrAliases[u]; ok {
		return a
	}
	return u
}

// lookupAttr returns the value of the first attribute of type name (short
// name, long name or OID, any case), in the order of the string.
func lookupAttr(attrs []Attribute, name string) (string, bool) {
	want := canonAttr(name)
	for _, a := range attrs {
		if canonAttr(a.Type) == want {
			return a.Value, true
		}
	}
	return "", false
}

// ParseDN parses a distinguished name in the string form of RFC 4514 (as
// pkix.Name.String writes it): attributes separated by ',' (or ';'),
// multi-valued ones joined by '+', values with '\' escapes (a special
// character or two hex digits), a quoted value, or '#' and hex (BER,
// returned as the hex string, '#' included).
func ParseDN(s string) ([]Attribute, error) {
	var out []Attribute
	i := 0
	for i < len(s) {
		// Type.
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			return nil, errors.New("attribute without '='")
		}
		typ := strings.TrimSpace(s[i : i+j])
		if typ == "" {
			return nil, errors.New("empty attribute type")
		}
		i += j + 1
		// Value.
		var v strings.Builder
		switch {
		case i < len(s) && s[i] == '#':
			k := i + 1
			for k < len(s) && s[k] != ',' && s[k] != '+' && s[k] != ';' {
				k++
			}
			if _, err := hex.DecodeString(strings.TrimSpace(s[i+1 : k])); err != nil {
				return nil, errors.New("bad hex value")
			}
			v.WriteString(strings.TrimSpace(s[i:k]))
			i = k
		case i < len(s) && s[i] == '"':
			i++
			for {
				if i >= len(s) {
					return nil, errors.New("unterminated quoted value")
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 >= len(s) {
						return nil, errors.New("dangling escape")
					}
					c = s[i+1]
					i++
				}
				v.WriteByte(c)
				i++
			}
			for i < len(s) && s[i] == ' ' {
				i++
			}
		default:
			for i < len(s) && s[i] == ' ' { // unescaped leading spaces
				i++
			}
			trail := 0 // unescaped trailing spaces to trim
			for i < len(s) && s[i] != ',' && s[i] != '+' && s[i] != ';' {
				c := s[i]
				if c == '\\' {
					if i+1 >= len(s) {
						return nil, errors.New("dangling escape")
					}
					if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
						b, _ := hex.DecodeString(s[i+1 : i+3])
						v.WriteByte(b[0])
						i += 3
					} else {
						v.WriteByte(s[i+1])
						i += 2
					}
					trail = 0
					continue
				}
				v.WriteByte(c)
				if c == ' ' {
					trail++
				} else {
					trail = 0
				}
				i++
			}
			val := v.String()
			v.Reset()
			v.WriteString(val[:len(val)-trail])
		}
		out = append(out, Attribute{Type: typ, Value: v.String()})
		if i < len(s) {
			if c := s[i]; c != ',' && c != '+' && c != ';' {
				return nil, errors.New("garbage after a quoted value")
			}
			i++
			if i == len(s) {
				return nil, errors.New("trailing separator")
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty distinguished name")
	}
	return out, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
