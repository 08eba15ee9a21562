// Package fleet is skybridge-cloud's core: the node registry and
// activation, applications, configs and secrets, label-selector
// scheduling, a versioned desired state per node, the nodes' reported
// state, device models, devices and their shadows, the event log, and the
// cloud's side of every node's upstream stream (deduplicated by node and
// sequence number).
//
// # Contract
//
// A Fleet is a state machine in the style of etcd raft's RawNode. It does
// no network I/O, reads no clock (every call that needs the time takes
// now), draws randomness only from the env.Rand it is given and starts no
// goroutine. Its state lives in memory and in a kv.DB on the vfs.FS it is
// given; every call that changes something writes one synced batch before
// it returns, so a crash after a call loses nothing the call reported.
// A Fleet is not safe for concurrent use: the runtime serialises calls
// (cloud/service holds a mutex; the simulator has one thread).
//
// Inputs are method calls: operator calls (CreateToken, PutApp, PutConfig,
// PutSecret, SetLabels, Revoke, PutDevice, SetShadowDesired, ...), node
// requests (Activate, Renew, ArtifactAllowed) and node messages
// (HandleUp: an api.Up from a node's up topic), and Tick(now) for leases.
// Output comes from Ready: the MQTT messages to publish (acknowledgements
// and desired states for nodes' down topics, QoS 1) and the nodes whose
// connections must be closed (revoked or deleted). NextDeadline says when
// Tick is next due.
//
// # Guarantees
//
//   - Effectively-once upstream: a node's records are applied in sequence
//     order, each exactly once per store epoch, and acknowledged only once
//     the batch that applied them is synced. A record below the cursor is a
//     duplicate and is ignored; a batch that starts beyond the cursor is
//     applied only when the node's Floor says the records in between were
//     dropped by the node (counted as gaps).
//   - Desired state versions only grow, and a version names one content:
//     the version is bumped, in the same batch as the change that caused
//     it, exactly when the node's resolved desired state changes.
//   - A node that is only offline is never evicted: its desired state,
//     labels and certificate stay. Online/offline follows a lease renewed
//     by every message from the node; after a cloud restart a node that
//     was online gets a fresh lease instead of flapping offline.
//   - Secrets and the CA key are encrypted at rest (AES-256-GCM).
package fleet
