// Package forward carries published messages from one broker node to
// another: one ordered, flow-controlled link per (sender node, receiver
// node), on which a message crosses once per destination node whatever the
// number of subscribers there (the receiving node matches it against its
// own subscriptions). docs/CLUSTER.md ("Forwarding between nodes") has the
// design, the guarantees and the measured figures; the broker does not use
// it yet.
//
// # Contract
//
// Sender and Receiver are sans-I/O state machines, one per link end. They
// never read a clock, never touch a socket and never start a goroutine; a
// runtime (impl/forward/transport in production) drives each from one
// goroutine at a time (or holds a lock around every call) and moves bytes.
//
// The sender's runtime:
//
//   - Enqueue each message for the peer. The queue is bounded in messages
//     and bytes (pending plus unacknowledged). When it is full a QoS 0
//     message is dropped (counted in Stats.Dropped) and a QoS 1/2 message
//     is refused (Stats.Refused): the error carries 0x97 Quota exceeded, so
//     the broker refuses the publish or holds its acknowledgement. Nothing
//     accepted is dropped later while the Sender lives.
//   - On a new connection call Connected, on its loss Disconnected.
//   - Write whatever Output appends, in order, on the current connection;
//     call Output again until it appends nothing (then flush), and again
//     after every Enqueue or Handle.
//   - Hand every frame read from the connection to Handle (the bytes inside
//     the length prefix: ReadLen splits the stream); an error means the
//     connection must be closed, the error's Code and Reason say why.
//   - After Handle, TakeReleased returns the tokens of QoS 1/2 messages the
//     receiver acknowledged: "delivered to the peer" (made durable there, if
//     the receiving runtime waits for durability). The broker acknowledges
//     a publish once every destination node has released its token.
//   - Waiting reports that frames written on the connection await their
//     acknowledgement: the runtime bounds that wait and breaks a
//     connection whose peer stopped answering (what it held goes again).
//
// The receiver's runtime:
//
//   - Connected on a new connection (its first frame must be the sender's
//     hello), Disconnected on its loss; Handle every frame; write Output.
//   - Handle calls deliver for each new message, in the sender's order,
//     exactly once per Receiver even when the sender resends after a
//     reconnection. The message borrows the frame's bytes (Owned false):
//     valid during the call only.
//   - With Config.WaitDurable, acknowledgements go no further than what the
//     runtime reported with Durable(incarnation, seq); without it, a
//     delivered message counts as durable.
//   - State returns what to persist with the messages (the sender's
//     incarnation and the durable sequence number) for deduplication across
//     the receiver's own restarts; NewReceiver takes it back.
//
// Sessions: each side announces its node id and incarnation (a number that
// grows with every process start); the sender also announces its link
// number (SenderConfig.Link), which a runtime raises each time it makes a
// new Sender for the same peer in the same process (after abandoning the
// old one, e.g. while it held the peer dead). A receiver keeps its
// deduplication state per (sender incarnation, link): the same pair on a
// new connection is a reconnection of the same session, whose resent frames
// are recognised by their sequence numbers; a higher pair means a new
// session (the sender restarted, or abandoned the old link: what that did
// not get acknowledged was never acknowledged to its publishers, so nothing
// acknowledged is lost), and the state starts again from the hello's first
// unacknowledged frame; a lower pair is stale and is refused. A sender that
// sees a new receiver incarnation counts it and resends everything
// unacknowledged. (Durable reports name the incarnation only: with
// WaitDurable, a report about an old link of the same incarnation would
// count for the new one; nothing uses WaitDurable yet.)
package forward
