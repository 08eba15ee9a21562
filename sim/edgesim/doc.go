// Package edgesim runs skybridge-cloud and skybridge-edge in the
// deterministic simulator: the real cores (cloud/fleet, edge/agent) and
// the real broker core between them (the simulator's broker process), on
// the simulator's virtual clock, network and crashable disks, through
// hours of partitions, power losses of nodes and of the cloud, app
// crashes, connection resets, certificates expiring during outages and an
// operator changing desired states meanwhile. An oracle checks the
// invariants during and at the end of every run (see Invariant); a seed
// replays a run event for event (Result.Hash).
//
// # Contract
//
// Core code (impl/env/purity_test.go scans it): no wall clock, no global
// randomness, no os or net, no goroutines. Everything random derives from
// the run's seed. Maps serve lookups; whatever reaches the trace or a
// result is iterated in sorted order.
//
// # What runs
//
//   - The cloud host: the fleet on its disk, the broker process (real
//     impl/broker with the fleet's certificate authentication and ACL; a
//     certificate travels as the CONNECT password and is verified against
//     the CA on virtual time, standing in for TLS), the cloud's own MQTT
//     connection, and the API (activation, renewal, artifact downloads) as
//     one request per connection.
//   - Each node's host: the agent on its disk, an MQTT 5.0 client
//     (mqtt.go) that reconnects with exponential backoff and full jitter,
//     the calls to the API, a runner that starts an app after a short delay
//     if its artifact is on the node, and a device that takes desired
//     values and reports measurements.
//
// A power loss keeps what each disk synced (Pebble on vfs.NewCrashableMem,
// CrashClone with a random share of unsynced data kept); a node's apps die
// with it.
package edgesim
