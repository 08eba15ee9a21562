// Package webhook connects the broker's extension points to external HTTP
// services: an authenticator, an authorizer and an event sink. It is a
// runtime package (listed in impl/env/purity_test.go): it makes HTTP
// requests and the event sink runs a goroutine. The broker's core sees
// only the interfaces it implements (broker.Authenticator, auth.Decider,
// acl.Authorizer, event.Sink).
//
// # Authenticator
//
// POST {URL} with
//
//	{"clientid": "...", "username": "...", "password": "<base64>", "listener": "...",
//	 "remote": "...", "cert_subject": "...", "default_tenant": "..."}
//
// and expects 200 with
//
//	{"result": "allow" | "deny" | "ignore", "tenant": "...", "user": "...",
//	 "acl": {"publish": [...], "subscribe": [...], "rules": [...]},   (optional, acl.Claim)
//	 "expires_at": 1767225600,                                          (optional, Unix seconds)
//	 "reason": 138}                                                     (optional: a deny's CONNACK code)
//
// "ignore" means "not mine" (the next member of an auth.Chain decides).
// An allow without a tenant takes it from the user name ("tenant/user")
// or the listener. Anything else (a timeout, a status other than 200, a
// body that does not parse, over 64 KiB) is a failure.
//
// Decisions are cached (a bounded LRU; allow and deny each with a TTL),
// keyed by a keyed hash of every field but remote (so the password is not
// kept in memory, and a client reconnecting from another port hits the
// cache). A circuit breaker opens after BreakerFailures consecutive
// failures and stays open for BreakerCooldown; then one request probes it
// (half-open): success closes it, failure opens it again. While the
// breaker is open, and on a failure, the client is refused with 0x88
// Server unavailable, except that with WhenOpen AllowCached an allow that
// is still in the cache after its TTL (stale) is used. Fresh cache hits
// are served in every state.
//
// # Authorizer
//
// POST {URL} with {"tenant", "user", "clientid", "action": "publish" |
// "subscribe", "topic", "retain"} and expects 200 with {"result": "allow" |
// "deny"}. It implements acl.Authorizer with the same cache and breaker;
// on failure and while open the check is denied, or with AllowCached a
// stale allow is used. Combine it with an acl.Set through acl.AllOf.
//
// # Event sink
//
// Sink batches events (up to BatchSize, or BatchAge after the first) and
// POSTs each batch as a JSON array of event.Event objects. Emit never
// blocks: the queue is bounded (QueueSize) and what does not fit is
// dropped and counted. A batch that fails is retried MaxRetries times
// with a doubling backoff, then dropped and counted. Close flushes what is
// queued, within its context's deadline.
//
// Every counter is exposed through Stats. Clocks: cache TTLs and the
// breaker's cooldown read the injected env.Clock (tests move a manual
// clock); request timeouts, batch age and retry backoff use real time.
package webhook
