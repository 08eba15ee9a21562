// Package auth holds the broker's built-in authenticators: a password file
// (bcrypt), JWT, TLS client certificates, a Chain that combines them, and
// SCRAM-SHA-256 enhanced authentication (MQTT 5.0 AUTH).
//
// # Contract
//
// The package is pure: no clock (JWT takes an env.Clock), no randomness of
// its own (SCRAM takes an io.Reader for nonces), no file access (a password
// file is given as bytes; the runtime reads and watches the file and calls
// Replace), no goroutines, no panic on any input. Every authenticator is
// safe for concurrent use: the broker calls them from connection readers.
// Refusals carry MQTT reason codes (see the table below); the broker maps
// them to 3.1.1 return codes for older clients.
//
// # What the broker calls
//
// Each built-in implements broker.Authenticator (Authenticate) and Decider
// (Decide: the same decision, plus whether the client was recognised at
// all, and an Identity with what the broker needs after CONNECT). The
// broker should call Identify(a, req) instead of a.Authenticate(req):
//
//	id := auth.Identify(a, &req)   // CONNECT without an Authentication Method
//	id.Code                        // 0x00 to accept, else the CONNACK reason
//	id.Tenant, id.User             // who the client is
//	id.Expires                     // non-zero: the credentials end then
//	id.ACL                         // non-nil: acl.Client.Extra for this client
//
// For enhanced authentication the broker keeps calling
// broker.EnhancedAuthenticator.Begin and Exchange.Step, and IdentityOf(ex)
// once the exchange is done. Methods dispatches Begin by method name to
// SCRAM ("SCRAM-SHA-256") and, when configured, JWT (a method whose AUTH
// data is a token, so that a 5.0 client can re-authenticate with a fresh
// token before the old one expires).
//
// When Identity.Expires is set the broker arms a timer (env.Clock) for that
// instant. A successful re-authentication (5.0 AUTH 0x19) replaces the
// Identity and re-arms it; at expiry the broker disconnects the client
// (5.0: DISCONNECT 0x87 Not authorized; 3.1.1: close). The server cannot
// start a re-authentication in MQTT 5.0 (only the client sends AUTH 0x19),
// so a client that wants to stay connected re-authenticates before expiry.
//
// # Chains
//
// Chain asks its Deciders in order; the first that recognises the client
// decides, and its refusal is final (no later member is asked). Recognised:
//
//	CertAuth      a verified client certificate (on its listeners)
//	JWT           a password that has the shape of a JWT (three base64url parts)
//	PasswordFile  a user name that has a bcrypt entry in the file
//	HTTP (webhook) every client, unless the endpoint answers "ignore"
//
// A client no member recognises is refused (0x86 if it sent a user name or
// password, 0x87 otherwise), unless it sent neither a user name nor a
// password and its listener is in AllowAnonymous: then it is accepted in
// the listener's default tenant with an empty user name.
//
// # Reason codes
//
//	0x86 Bad User Name or Password  wrong password, unknown user, bad or expired token, SCRAM proof wrong
//	0x87 Not authorized              certificate without the mapped attribute, token ACL invalid,
//	                                 SCRAM message malformed, anonymous client where not allowed
//	0x8C Bad authentication method   SCRAM channel binding requested ("p=")
//	0x82 Protocol Error              an exchange stepped after it ended
//
// # Limits
//
// Guard (guard.go) bounds what authentication costs: failure throttling
// per source address and per user, decided before anything is hashed
// (0x9F, then 0x8A for a source that keeps failing), and a bounded pool of
// workers with a bounded queue (0x89 beyond) for the expensive
// verifications. Wrap the chain with Guard.Authenticator, its expensive
// members with Guard.Bounded, enhanced authentication with Guard.Enhanced.
//
// # Timing
//
// PasswordFile compares an unknown user's password against a real bcrypt
// hash of the file (the first one, so of the file's cost) before refusing
// or passing the client on, so a refusal takes as long for an unknown user
// as for a known one with a wrong password. SCRAM answers an unknown user
// with a made-up salt (a keyed hash of the name, stable across attempts)
// and the iteration count of the file, and fails only at the proof.
package auth
