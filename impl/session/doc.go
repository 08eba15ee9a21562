// Package session is one client's MQTT protocol state machine for 3.1,
// 3.1.1 and 5.0: the state that outlives a connection (subscriptions,
// unacknowledged and queued messages, the will, expiry) and the state of the
// current connection (keep alive, topic aliases, flow-control quotas).
//
// # Contract
//
// A Session is not safe for concurrent use: the broker serialises every
// call on one session (it holds a per-session lock). It does no I/O, reads
// no clock (every call that needs the time takes `now`), starts no goroutine
// and never panics on client input.
//
// Events go in as method calls: Attach (a CONNECT was accepted), Handle (a
// packet from the client), Deliver (a message from the router), the
// completion calls PublishDone/SubscribeDone/UnsubscribeDone, and Detach
// (the connection ended). What the session wants done comes out two ways:
// packets to send are appended to its output buffer, which the runtime
// drains with TakeOutput; everything else the broker must do (route a
// message, change routes, publish a will, close the connection) is returned
// as a Result that the caller consumes before the next call.
//
// Messages handed to Deliver must be owned (message.Message.Own) when the
// session may keep them; Deliver copies nothing. Bytes in a Result alias the
// packet passed to Handle and are valid until the next call.
package session
