package session

import (
	"math"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Config holds the limits and capabilities a session applies and announces.
type Config struct {
	// MaxQoS is the highest QoS the broker grants and accepts (0..2).
	MaxQoS packet.QoS
	// RetainAvailable, WildcardSubscriptions, SharedSubscriptions and
	// SubscriptionIdentifiers switch optional features; a 5.0 CONNACK
	// announces those that are off.
	RetainAvailable         bool
	WildcardSubscriptions   bool
	SharedSubscriptions     bool
	SubscriptionIdentifiers bool
	// ReceiveMaximum is how many unacknowledged QoS 1/2 PUBLISHes a 5.0
	// client may have outstanding towards the broker.
	ReceiveMaximum uint16
	// MaxInflight caps unacknowledged QoS 1/2 PUBLISHes towards a client
	// (for 3.x clients it is the only cap; 5.0 clients also set their own).
	MaxInflight uint16
	// MaxQueued bounds the messages a session holds that are not yet sent
	// (offline, or waiting for the inflight window). Beyond it new messages
	// are dropped and counted.
	MaxQueued int
	// MaxQueuedBytes bounds the bytes of the QoS 1/2 messages a session
	// holds (queued or in flight); 0: no byte bound.
	MaxQueuedBytes int
	// MaxOutput bounds the bytes waiting for the connection's writer. QoS 0
	// messages beyond it are dropped and counted; QoS 1/2 wait in the queue.
	MaxOutput int
	// TopicAliasMaximum is how many topic aliases a 5.0 client may use
	// towards the broker (0: none).
	TopicAliasMaximum uint16
	// OutboundTopicAliases lets the broker assign topic aliases to messages
	// it sends to 5.0 clients that accept them.
	OutboundTopicAliases bool
	// MaxPacketSize is the largest packet the broker accepts (announced to
	// 5.0 clients; 0: no limit announced).
	MaxPacketSize uint32
	// MaxKeepAlive caps the keep alive a client may ask for (0: no cap); a
	// 5.0 client is told the capped value as Server Keep Alive.
	MaxKeepAlive uint16
	// MaxSessionExpiry caps the Session Expiry Interval (seconds), and the
	// life of a 3.1/3.1.1 session with clean session 0 (PersistentExpiry);
	// MinSessionExpiry raises a non-zero one (5.0, announced in CONNACK).
	MaxSessionExpiry uint32
	MinSessionExpiry uint32
	// MinKeepAlive raises a lower (or zero) keep alive of a 5.0 client,
	// announced as Server Keep Alive.
	MinKeepAlive uint16
	// PersistentExpiry is the expiry given to 3.1/3.1.1 sessions with clean
	// session 0, which the protocol lets live forever (seconds).
	PersistentExpiry uint32
}

// DefaultConfig returns the limits a production broker starts from.
func DefaultConfig() Config {
	return Config{
		MaxQoS:                  packet.QoS2,
		RetainAvailable:         true,
		WildcardSubscriptions:   true,
		SharedSubscriptions:     true,
		SubscriptionIdentifiers: true,
		ReceiveMaximum:          1024,
		MaxInflight:             1024,
		MaxQueued:               10000,
		MaxQueuedBytes:          64 << 20,
		MaxOutput:               1 << 20,
		TopicAliasMaximum:       64,
		OutboundTopicAliases:    true,
		MaxPacketSize:           1 << 20,
		MaxSessionExpiry:        math.MaxUint32,
		PersistentExpiry:        math.MaxUint32,
	}
}
