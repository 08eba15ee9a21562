// Package api is the data model shared by skybridge-cloud and
// skybridge-edge: the resources an operator manages (nodes, applications,
// configs, secrets, device models, devices), the documents that travel
// between the cloud and a node (the desired state, the upstream batch of
// outbox records, the acknowledgement), the MQTT topics they travel on,
// name validation and label selectors.
//
// # Contract
//
// The package is pure: no I/O, no clock, no randomness, no goroutines.
// Everything is plain data with JSON encodings that are stable: slices are
// kept sorted by name where order has no meaning, so that two equal
// documents encode to the same bytes and hash alike (Hash). Decoding never
// panics on bad input; Validate methods say what is wrong, naming the field.
//
// # Topics
//
// A node talks to the cloud on two topics of its own (NodeUpTopic,
// NodeDownTopic): it publishes Up batches and subscribes to Down messages.
// The broker's ACL lets a node's certificate reach only these two; the
// cloud subscribes to UpFilter (every node's up topic).
package api
