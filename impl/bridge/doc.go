// Package bridge forwards MQTT messages between the local Skybridge and a
// remote broker (another Skybridge, mosquitto, a cloud broker), each way
// by rules, through a durable queue per direction.
//
// This package is a runtime, exempt from the core's purity rule: it opens
// sockets, reads the clock and runs goroutines.
//
// # Model
//
// A bridge is two MQTT clients and two queues. Its local client joins the
// local broker as an ordinary MQTT 5.0 client (in whatever tenant the
// local authenticator gives its credentials) and subscribes to the filters
// of the out rules; its remote client joins the remote broker (MQTT 5.0 or
// 3.1.1) and subscribes to the filters of the in rules. A message received
// on one side is mapped to its topic on the other side (Rule: strip, then
// prefix), marked, queued, and sent to the other side by that direction's
// forwarder. Both sessions are persistent (session_expiry, 24 h by
// default), so each broker keeps what arrives for the bridge while it is
// away.
//
// # Contract
//
//   - At least once, end to end, for QoS 1. A QoS 1 message is acknowledged
//     to the broker it came from only after it is durably in the queue
//     (group-committed, synced Pebble batches on a vfs.FS), and leaves the
//     queue only after the other broker acknowledged it (PUBACK). A crash
//     of the bridge, a restart, a broker going down or a network failure
//     lose nothing that was acknowledged; they may repeat messages (the
//     source broker sends again what it had no acknowledgement for; the
//     forwarder sends again what it had no PUBACK for).
//   - Never exactly once: QoS 2 messages are received and forwarded at
//     QoS 1. A rule's qos (0 or 1, default 1) caps the subscription, and so
//     the QoS of what it forwards; the receiver's Maximum QoS caps it too.
//     QoS 0 messages are queued like the others and sent once, without
//     acknowledgement.
//   - Order per direction. Messages are forwarded in the order they were
//     queued, which is the order the source broker sent them; at most
//     max_inflight (default 256, and never more than the receiver's Receive
//     Maximum) wait for their PUBACK at once. After a reconnection, sending
//     starts again from the oldest message still queued, so repeats come in
//     order too: the first arrival of every message is in order. The one
//     exception is a transient refusal (PUBACK 0x97 or 0x89): the messages
//     already in flight behind the refused one may be accepted before it is
//     sent again (max_inflight 1 rules that out, at the cost of one round
//     trip per message).
//   - Bounded. Each direction's queue holds at most queue.max_messages and
//     queue.max_bytes; beyond, queue.drop_policy drops the oldest queued
//     messages (drop_oldest, the default) or the new one (refuse_new). A
//     dropped message is acknowledged to its source all the same (holding
//     it would stall the whole source connection) and counted. Memory holds
//     16 bytes per queued message, not the messages.
//   - Every drop is counted by reason (Stats, Drops) and logged at most once
//     every ten seconds with the totals: queue_full, loop, hops, expired
//     (Message Expiry ran out while queued), too_large (above the receiver's
//     Maximum Packet Size), rejected (PUBACK with a reason code of 0x80 or
//     above; 0x97 quota exceeded and 0x89 server busy are retried after
//     reconnect_min instead), unmapped, corrupt (a queue record that cannot
//     be read back).
//   - Loop prevention. Subscriptions use No Local (5.0), so what the bridge
//     publishes on a side never comes back to it there. Every forwarded
//     message carries the User Properties "skybridge-bridge" = name (one
//     per bridge crossed, in order) and "skybridge-hops" = the number of
//     bridges crossed; a message that already crossed this bridge (through
//     any number of brokers and other bridges) is dropped (loop), and one
//     that crossed max_hops bridges (default 8) too (hops). Over MQTT 3.1.1
//     there are neither User Properties nor No Local: the marker cannot
//     cross such a link, so Validate refuses an in rule that would receive
//     what an out rule publishes on a 3.1.1 remote.
//   - Properties are carried: Payload Format, Content Type, Response Topic
//     (not mapped), Correlation Data, User Properties (in order), Message
//     Expiry (what is left of it), and the RETAIN flag (subscriptions use
//     Retain As Published, and Retain Handling 1: retained messages are
//     received when a subscription is new, not on every reconnection).
//     Over 3.1.1 only the topic, payload, QoS and RETAIN exist.
//
// # Rules
//
// A rule's filter is subscribed on its source side; a received topic loses
// strip from its start and gains prefix. The filters of one direction must
// not overlap (brokers differ in how many copies of a message matching two
// subscriptions they send), and shared subscriptions are not accepted.
//
// # Connections
//
// The bridge drives paho.golang's Client (MQTT 5.0) and paho.mqtt.golang
// (3.1.1) itself rather than autopaho's ConnectionManager: the manager
// only has a blocking Publish, one message per round trip, while the
// forwarder keeps many in flight in order (PublishWithOptions with
// PublishMethod_AsyncSend from a single goroutine). Each connection has a
// session state of its own that lives as long as the connection: the
// queue, not paho, remembers what is unacknowledged. Received messages
// are acknowledged manually (ClientConfig.EnableManualAcknowledgment);
// paho sends the acknowledgements in arrival order. Reconnection uses
// autopaho's randomised exponential backoff between reconnect_min and
// reconnect_max.
//
// # API
//
// New validates a Config (errors name the field, e.g. bridges[0].out[1].
// filter), reads TLS files and opens every bridge's queue, resuming what a
// previous run left. Start connects and forwards until Close (or until its
// context ends). Close disconnects cleanly, keeping both sessions, and
// closes the queues. Stats returns counters per bridge and direction and
// the state of each connection.
package bridge
