package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/skybridge-mq/skybridge/impl/broker"
	"github.com/skybridge-mq/skybridge/impl/packet"
)

// SCRAMMethod is the MQTT Authentication Method of SCRAM-SHA-256.
const SCRAMMethod = "SCRAM-SHA-256"

// DefaultIterations is the PBKDF2 iteration count DeriveSCRAM uses for 0
// (RFC 7677 asks for at least 4096).
const DefaultIterations = 4096

const (
	scramPrefix  = "SCRAM-SHA-256$"
	maxIter      = 10_000_000
	maxSCRAMData = 4096 // longest client message accepted
	nonceBytes   = 24
)

// Credentials are what a server stores for SCRAM-SHA-256 (RFC 5802 section
// 3): enough to verify a client's proof and to prove itself, not enough to
// log in as the client.
type Credentials struct {
	Salt       []byte
	Iterations int
	StoredKey  [sha256.Size]byte
	ServerKey  [sha256.Size]byte
}

func hmacSHA256(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// DeriveSCRAM computes the credentials for password with salt and
// iterations (0: DefaultIterations). The password is used as given (no
// SASLprep: store and send the same bytes).
func DeriveSCRAM(password, salt []byte, iterations int) (Credentials, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < 1 || iterations > maxIter {
		return Credentials{}, fmt.Errorf("auth: SCRAM iteration count %d outside 1..%d", iterations, maxIter)
	}
	if len(salt) == 0 {
		return Credentials{}, errors.New("auth: SCRAM salt is empty")
	}
	salted, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, sha256.Size)
	if err != nil {
		return Credentials{}, fmt.Errorf("auth: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	c := Credentials{Salt: append([]byte(nil), salt...), Iterations: iterations}
	c.StoredKey = sha256.Sum256(clientKey)
	copy(c.ServerKey[:], hmacSHA256(salted, []byte("Server Key")))
	return c, nil
}

// NewCredentials derives credentials for password with a fresh 16-byte
// salt read from rand.
func NewCredentials(rand io.Reader, password []byte, iterations int) (Credentials, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return Credentials{}, fmt.Errorf("auth: salt: %w", err)
	}
	return DeriveSCRAM(password, salt, iterations)
}

// String formats the credentials as a password file secret:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64).
func (c Credentials) String() string {
	b := base64.StdEncoding
	return scramPrefix + strconv.Itoa(c.Iterations) + ":" + b.EncodeToString(c.Salt) + "$" +
		b.EncodeToString(c.StoredKey[:]) + ":" + b.EncodeToString(c.ServerKey[:])
}

// ParseCredentials reads what String writes.
func ParseCredentials(s string) (Credentials, error) {
	var c Credentials
	rest, ok := strings.CutPrefix(s, scramPrefix)
	if !ok {
		return c, errors.New("SCRAM secret does not start with " + scramPrefix)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return c, errors.New("SCRAM secret has no '$' before its keys")
	}
	iter, salt, ok := strings.Cut(params, ":")
	if !ok {
		return c, errors.New("SCRAM secret has no ':' between iterations and salt")
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n < 1 || n > maxIter {
		return c, fmt.Errorf("SCRAM iteration count must be 1..%d", maxIter)
	}
	c.Iterations = n
	if c.Salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(c.Salt) == 0 {
		return c, errors.New("SCRAM salt is not non-empty base64")
	}
	stored, server, ok := strings.Cut(keys, ":")
	if !ok {
		return c, errors.New("SCRAM secret has no ':' between StoredKey and ServerKey")
	}
	for _, k := range []struct {
		s   string
		dst []byte
	}{{stored, c.StoredKey[:]}, {server, c.ServerKey[:]}} {
		b, err := base64.StdEncoding.DecodeString(k.s)
		if err != nil || len(b) != sha256.Size {
			return c, errors.New("SCRAM key is not 32 bytes of base64")
		}
		copy(k.dst, b)
	}
	return c, nil
}

// SCRAM serves SCRAM-SHA-256 enhanced authentication (RFC 5802, RFC 7677)
// over MQTT 5.0 AUTH, with credentials from a PasswordFile. It implements
// broker.EnhancedAuthenticator. Channel binding is not offered: the client
// sends the GS2 header "n,," (or "y,,"); "p=..." is refused with 0x8C.
//
// The conversation, as the broker runs it:
//
//	CONNECT  auth data: client-first   "n,,n=user,r=<client nonce>"
//	AUTH 0x18 (server): server-first   "r=<client+server nonce>,s=<salt>,i=<iterations>"
//	AUTH 0x18 (client): client-final   "c=biws,r=<nonce>,p=<proof>"
//	CONNACK 0x00 auth data: server-final "v=<server signature>"
//
// The SCRAM user name is "tenant/user", or a user of the listener's
// default tenant (broker.TenantOf). If the CONNECT also carries a user
// name, it must be the same.
type SCRAM struct {
	creds  *PasswordFile
	rand   io.Reader
	secret []byte // keys the made-up salts of unknown users
	// nonce returns a server nonce; tests replace it to replay RFC 7677.
	nonce func() (string, error)
}

// NewSCRAM returns a SCRAM authenticator. rand supplies server nonces and,
// once, the key of the made-up salts; it must be safe for concurrent use
// if the broker runs exchanges concurrently, and unpredictable in
// production (crypto/rand.Reader from the runtime): a client that can
// predict nonces can replay a recorded conversation.
func NewSCRAM(creds *PasswordFile, rand io.Reader) (*SCRAM, error) {
	if creds == nil || rand == nil {
		return nil, errors.New("auth: SCRAM needs credentials and a random source")
	}
	s := &SCRAM{creds: creds, rand: rand, secret: make([]byte, 32)}
	if _, err := io.ReadFull(rand, s.secret); err != nil {
		return nil, fmt.Errorf("auth: SCRAM key: %w", err)
	}
	s.nonce = s.randomNonce
	return s, nil
}

func (s *SCRAM) randomNonce() (string, error) {
	b := make([]byte, nonceBytes)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(b), nil
}

// Begin implements broker.EnhancedAuthenticator for SCRAMMethod. The broker
// calls it for a CONNECT and again for each re-authentication.
func (s *SCRAM) Begin(method string, req *broker.AuthRequest) (broker.Exchange, bool) {
	if method != SCRAMMethod {
		return nil, false
	}
	x := &scramExchange{s: s}
	if req != nil {
		x.req = *req
	}
	return x, true
}

type scramExchange struct {
	s   *SCRAM
	req broker.AuthRequest

	state       int // 0: want client-first; 1: want client-final; 2: ended
	gs2         string
	clientBare  string
	serverFirst string
	nonce       string
	creds       *Credentials // nil for an unknown user
	tenant      string
	user        string
	id          Identity
}

func (x *scramExchange) fail(code packet.ReasonCode) ([]byte, bool, packet.ReasonCode) {
	x.state = 2
	x.id = refused(code)
	return nil, false, code
}

// Step implements broker.Exchange.
func (x *scramExchange) Step(data []byte) ([]byte, bool, packet.ReasonCode) {
	if len(data) > maxSCRAMData {
		return x.fail(packet.NotAuthorized)
	}
	switch x.state {
	case 0:
		return x.first(string(data))
	case 1:
		return x.final(string(data))
	}
	return nil, false, packet.ProtocolError
}

// first handles client-first-message (RFC 5802 section 7):
// gs2-header client-first-message-bare.
func (x *scramExchange) first(msg string) ([]byte, bool, packet.ReasonCode) {
	m, err := parseClientFirst(msg)
	if err != nil {
		if errors.Is(err, errChannelBinding) {
			return x.fail(packet.BadAuthenticationMethod)
		}
		return x.fail(packet.NotAuthorized)
	}
	if m.authzid != "" && m.authzid != m.user {
		return x.fail(packet.NotAuthorized) // acting for another user is not offered
	}
	if x.req.HasUser && x.req.Username != m.user {
		return x.fail(packet.BadUserNameOrPassword)
	}
	x.gs2, x.clientBare = m.gs2, m.bare
	x.tenant, x.user = broker.TenantOf(m.user, x.req.DefaultTenant)
	creds, fakeIter := x.s.creds.scramCredentials(x.tenant, x.user)
	salt, iter := []byte(nil), fakeIter
	if creds != nil {
		x.creds, salt, iter = creds, creds.Salt, creds.Iterations
	} else {
		// An unknown user gets a salt that looks real and stays the same
		// from one attempt to the next; the exchange fails at the proof.
		salt = hmacSHA256(x.s.secret, []byte(x.tenant+"\x00"+x.user))[:16]
	}
	sn, err := x.s.nonce()
	if err != nil {
		return x.fail(packet.ServerUnavailable)
	}
	x.nonce = m.nonce + sn
	x.serverFirst = "r=" + x.nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + ",i=" + strconv.Itoa(iter)
	x.state = 1
	return []byte(x.serverFirst), false, packet.ContinueAuthentication
}

// final handles client-final-message:
// "c=" base64(gs2-header) ",r=" nonce ["," extensions] ",p=" proof.
func (x *scramExchange) final(msg string) ([]byte, bool, packet.ReasonCode) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return x.fail(packet.NotAuthorized)
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return x.fail(packet.NotAuthorized)
	}
	for _, a := range attrs[2:] {
		if strings.HasPrefix(a, "m=") || len(a) < 2 || a[1] != '=' {
			return x.fail(packet.NotAuthorized) // mandatory extension, or malformed
		}
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil || string(cb) != x.gs2 {
		return x.fail(packet.NotAuthorized)
	}
	if subtle.ConstantTimeCompare([]byte(attrs[1][2:]), []byte(x.nonce)) != 1 {
		return x.fail(packet.NotAuthorized)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return x.fail(packet.NotAuthorized)
	}
	authMessage := []byte(x.clientBare + "," + x.serverFirst + "," + withoutProof)
	creds := x.creds
	if creds == nil {
		// Same work as for a known user, against keys nobody has.
		creds = &Credentials{}
		copy(creds.StoredKey[:], hmacSHA256(x.s.secret, []byte("stored\x00"+x.tenant+"\x00"+x.user)))
	}
	sig := hmacSHA256(creds.StoredKey[:], authMessage)
	clientKey := make([]byte, sha256.Size)
	for j := range clientKey {
		clientKey[j] = proof[j] ^ sig[j]
	}
	got := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(got[:], creds.StoredKey[:]) != 1 || x.creds == nil {
		return x.fail(packet.BadUserNameOrPassword)
	}
	serverSig := hmacSHA256(creds.ServerKey[:], authMessage)
	x.state = 2
	x.id = accepted(x.tenant, x.user)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), true, packet.Success
}

// Result implements broker.Exchange.
func (x *scramExchange) Result() broker.AuthResult {
	if x.state != 2 {
		return broker.AuthResult{Code: packet.NotAuthorized}
	}
	return x.id.Result()
}

// Identity is the identity the exchange established (see IdentityOf).
func (x *scramExchange) Identity() Identity {
	if x.state != 2 {
		return refused(packet.NotAuthorized)
	}
	return x.id
}

var errChannelBinding = errors.New("channel binding is not supported")

type clientFirst struct {
	gs2     string // the GS2 header, with its trailing ','
	bare    string
	authzid string
	user    string
	nonce   string
}

// parseClientFirst parses a client-first-message.
func parseClientFirst(msg string) (clientFirst, error) {
	var m clientFirst
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return m, errors.New("no GS2 header")
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return m, errChannelBinding
	default:
		return m, errors.New("bad GS2 channel binding flag")
	}
	az, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return m, errors.New("GS2 header not terminated")
	}
	if az != "" {
		v, ok := strings.CutPrefix(az, "a=")
		if !ok {
			return m, errors.New("bad authzid")
		}
		name, err := saslName(v)
		if err != nil {
			return m, err
		}
		m.authzid = name
	}
	m.gs2 = msg[:len(msg)-len(bare)]
	m.bare = bare
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 {
		return m, errors.New("client-first-message-bare too short")
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return m, errors.New("mandatory extension not supported")
	}
	u, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return m, errors.New("no user name")
	}
	name, err := saslName(u)
	if err != nil {
		return m, err
	}
	if name == "" {
		return m, errors.New("empty user name")
	}
	m.user = name
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || nonce == "" {
		return m, errors.New("no client nonce")
	}
	for i := 0; i < len(nonce); i++ {
		if c := nonce[i]; c < 0x21 || c > 0x7e { // printable, and ',' was split off
			return m, errors.New("nonce is not printable")
		}
	}
	m.nonce = nonce
	for _, a := range attrs[2:] {
		if len(a) < 2 || a[1] != '=' {
			return m, errors.New("malformed extension")
		}
	}
	return m, nil
}

// saslName decodes a saslname: "=2C" is ',' and "=3D" is '='; any other
// '=' is an error. Names must be valid UTF-8 without U+0000.
func saslName(s string) (string, error) {
	if !strings.ContainsAny(s, "=\x00") {
		if !utf8.ValidString(s) {
			return "", errors.New("user name is not UTF-8")
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			return "", errors.New("U+0000 in user name")
		case '=':
			switch {
			case strings.HasPrefix(s[i:], "=2C"):
				b.WriteByte(',')
			case strings.HasPrefix(s[i:], "=3D"):
				b.WriteByte('=')
			default:
				return "", errors.New("bad '=' escape in user name")
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	if !utf8.ValidString(b.String()) {
		return "", errors.New("user name is not UTF-8")
	}
	return b.String(), nil
}
