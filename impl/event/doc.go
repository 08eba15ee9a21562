// Package event is the broker's event collector: typed events (a client
// connected, disconnected, failed to authenticate, messages dropped, a
// throttle hit, ...) handed to a Sink.
//
// # Contract
//
// The package is pure: no clock (the caller stamps each event with the time
// of its env.Clock), no goroutines, no I/O of its own (Log writes through
// the slog.Handler it is given), no panic on any input.
//
// Emit must never block its caller: the broker calls it on connection
// readers and under session locks. Every sink here returns after a bounded
// amount of work: Counter bumps atomic counters, Ring appends to a bounded
// buffer, Log formats one line (and drops lines beyond its rate limit,
// counting them). A sink that must do slow work (the webhook sink in
// impl/webhook) queues the event in a bounded queue and counts what it has
// to drop. Sinks are safe for concurrent use.
//
// An Event is a plain value; its strings may be kept by a sink (they are
// immutable in Go). A sink must not modify an Event it was given.
//
// # Where the broker emits
//
//   - Connected: after CONNACK 0x00 is queued (Reason 0, Detail the
//     protocol version, Remote, Listener).
//   - AuthFailed: when CONNECT (or an enhanced exchange) is refused with
//     the CONNACK reason (Reason), before the client has a session.
//   - Disconnected: when a connection ends, with the reason the session
//     saw (the client's DISCONNECT code, 0x8E on takeover, 0x8D on keep
//     alive, 0x87 at token expiry, ...).
//   - MessageDropped: when messages are dropped (Detail the drop reason,
//     as broker.DropReasons names it; Count how many).
//   - Throttled: when a per-tenant throttle refuses or delays (Detail what:
//     "connections", "connect_rate", "inbound_bytes", ...).
//   - InboxOverflow: a session's queue is full and messages for it are
//     dropped; emitted at its 1st, 2nd, 4th, 8th… such drop (Count), so a
//     session that keeps overflowing never floods the sinks.
//   - SessionExpired: when a session's expiry timer fires.
//   - WillPublished: when a will message is published (Detail its topic).
//   - SubscriptionRefused: for each filter refused in a SUBACK (Reason the
//     code, Detail the filter).
//   - PublishRefused: when a PUBLISH is refused (Reason, Detail the topic).
//   - ReauthFailed / TokenExpired: a failed re-authentication, or a client
//     disconnected because its credentials expired.
package event
