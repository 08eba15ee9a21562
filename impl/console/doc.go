// Package console is Skybridge's web console: a single-page application
// (plain HTML, CSS and JavaScript, embedded, no build step) and the HTTP
// layer in front of it — login, sessions, CSRF protection, and a proxy to
// the JSON API of the process that serves it. The broker serves it on its
// admin listener (tenants, sessions, subscriptions, retained messages,
// settings, cluster); skybridge-cloud serves it with its fleet pages.
//
// # Contract
//
// Console is an http.Handler mounted at /console/. It is pure like the
// core: time comes from an env.Clock, session identifiers from an
// io.Reader the runtime gives (crypto/rand in production), and it starts
// no goroutine; the runtime's http.Server calls it.
//
//   - Login: POST /console/login with the admin token, or a user name and
//     password from the configured users (bcrypt). A success sets a
//     session cookie (HttpOnly, SameSite=Strict, Path=/console/, Secure
//     on TLS) holding a random identifier; nothing secret ever goes in a
//     URL. Failed logins are throttled per source address.
//   - GET /console/session returns the user, the CSRF token and the
//     sections the shell shows. Every request under /console/api/ needs
//     the session cookie; every one that changes something (not GET or
//     HEAD) also needs the X-CSRF-Token header with the session's token
//     and, when the browser sends them, an Origin of this host and no
//     cross-site Sec-Fetch-Site. /console/api/X is handed to the API
//     handler as /api/X, already authorised.
//   - Sessions are bounded (MaxSessions, the oldest evicted) and expire
//     after SessionTTL without a request.
//   - Without a token and without users the console answers clients on a
//     loopback address only, and logs them in without credentials, as
//     the admin API does.
//
// Pages are served with a Content-Security-Policy that allows only the
// console's own scripts and styles (no inline script), and may not be
// framed.
package console
