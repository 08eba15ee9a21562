// Package gateway is the edge node's device gateway core: the sans-I/O
// state machine that maps Modbus registers and bits to device properties
// (type, scale, offset, byte and word order), schedules polls, turns
// desired property values into register writes, backs off from devices
// that do not answer, and checks reports that MQTT devices publish on the
// node's local broker against their model.
//
// # Contract
//
// A Gateway does no I/O, reads no clock (every call takes now) and starts
// no goroutine; it is not safe for concurrent use (the runtime,
// edge/service with edge/modbustcp, serialises every call).
//
// Events go in as method calls: Configure (the devices of the node's
// desired state, with their models and endpoints, whenever it changes),
// PollDone and WriteDone (a Modbus operation's answer), MQTTReport (a
// device's report on the local broker), and Tick(now) when NextDeadline
// has come. What the runtime must do comes out of Ready: Modbus operations
// (a poll: reads in order; or one write), reports for the outbox,
// connections to close, and events to log.
//
// # Guarantees
//
//   - A device has at most one operation in flight, so the runtime's work
//     is bounded by the number of devices; an operation whose answer does
//     not come within its timeouts plus a slack counts as failed, and a
//     late answer is ignored.
//   - Desired values are written before the next poll, one property at a
//     time in name order, and read back by a poll right after; a write
//     the device refuses (a Modbus exception) is given up, a write that
//     did not reach it is retried after the backoff.
//   - A failing device is retried after a delay that doubles from the
//     larger of BackoffMin and its poll period up to BackoffMax.
//   - Reports carry the values that changed since the last poll, and every
//     value at the first poll and every ReportEvery; values that cannot be
//     decoded (a short read, a non-finite float, a value out of the
//     property's range) are left out and counted, never guessed.
//   - Nothing panics on bad input (fuzzed: FuzzDecode, FuzzEncode), and every queue is
//     bounded with a counter of what it dropped (MaxReports, MaxDevices).
package gateway
