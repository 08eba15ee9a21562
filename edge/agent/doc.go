// Package agent is skybridge-edge's core: the sans-I/O state machine that
// activates a node, keeps its desired state and artifacts locally,
// reconciles its apps against that state by version diff, restarts them by
// their policy, and sends everything upstream through a durable, sequenced,
// bounded outbox, paced after every reconnect.
//
// # Contract
//
// An Agent does no network or process I/O, reads no clock (every call
// takes now), draws randomness only from its env.Rand, and starts no
// goroutine. Its local store (cloud/kv) and artifact directory
// (cloud/blob) live on the vfs.FS it is given. It is not safe for
// concurrent use: the runtime (edge/service, or the simulator) serialises
// every call.
//
// Events go in as method calls: Activate (a join token), LinkUp and
// LinkDown (the MQTT connection to the cloud's broker), Message (a Down
// on the node's topic), Response (an HTTP request's answer), AppStarted,
// AppExited, AppFailed and AppHealth (the app runner), ArtifactReady and
// ArtifactFailed (a download), DeviceReported (the device gateway),
// Observe (resource samples), and Tick(now) when NextDeadline has come.
// What the runtime must do comes out of Ready: MQTT messages to publish
// (QoS 1), apps to start (a new generation replaces the running one) and
// to stop, artifacts to download into Artifacts(), HTTP requests
// (activation, renewal), device values to write, and Reconnect when the
// node's certificate changed.
//
// # Guarantees
//
//   - Autonomy: New starts every app of the last desired state stored
//     locally whose artifact is on the node, with no cloud; nothing stops
//     an app because the cloud is unreachable or the certificate expired.
//   - A desired state is stored (synced) before any app changes for it;
//     an app is replaced only once the new artifact is on the node, so a
//     node that cannot download keeps running the previous revision.
//   - The outbox: every record is synced with its sequence number before
//     it can be sent; records are deleted only when the cloud acknowledges
//     them (after the cloud made them durable), and are sent in sequence
//     order, one batch in flight, resent after AckTimeout or a reconnect.
//     The outbox is bounded by count, bytes and age; when full, the oldest
//     records are dropped (the newest say most about the node now) and
//     counted, and the next batch's Floor tells the cloud about the gap.
//   - Pacing: after a reconnect the first message waits a uniform random
//     delay up to ResyncJitter, and each acknowledgement may ask the node
//     to wait before its next batch (the cloud's drain rate), so a fleet
//     coming back at once does not stampede the cloud.
//   - Certificates are renewed at RenewAt of their lifetime, and, when a
//     node was offline past the expiry, with the expired certificate
//     (within the cloud's grace period): renewal goes over HTTPS, not over
//     the MQTT link that the expired certificate cannot open.
package agent
