// Package message defines the application message as the broker carries
// it from a publisher to its subscribers, retained store and queues.
//
// # Contract
//
// A Message either borrows its bytes (Owned false: topic, payload and
// property values alias a connection's read buffer and are valid only during
// the call that received the message) or owns them (Owned true: immutable,
// safe to keep and to share between any number of sessions and goroutines).
// Code that keeps a message beyond the current call keeps Own(), which copies
// a borrowed message once and returns an owned one as is. Nothing mutates an
// owned message.
package message

import (
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Message is an application message.
type Message struct {
	Topic   []byte
	Payload []byte
	QoS     packet.QoS
	Retain  bool
	// Properties holds the properties forwarded to subscribers (payload
	// format, content type, response topic, correlation data, user
	// properties). Message Expiry is carried by Expiry instead.
	Properties packet.Properties
	// Expiry is the absolute instant the message expires; zero: never. It is
	// computed once on receipt and never from a clock at delivery.
	Expiry time.Time
	// Publisher is the session that published the message (for No Local);
	// 0 for messages the broker makes itself (wills, $SYS).
	Publisher topic.SubscriberID
	// PublisherKey is a hash of the publisher's client identifier, used to
	// keep a publisher's messages on one member of a shared group.
	PublisherKey uint64
	Owned        bool
}

// forwarded are the properties that travel with a message to subscribers.
const forwarded = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData

// FromPublish fills m from a decoded PUBLISH, borrowing its bytes. now is
// the instant of receipt, from which a Message Expiry Interval counts.
func (m *Message) FromPublish(p *packet.Publish, now time.Time) {
	m.Topic, m.Payload, m.QoS, m.Retain = p.Topic, p.Payload, p.QoS, p.Retain
	user := m.Properties.User[:0]
	m.Properties = packet.Properties{}
	m.Properties.Present = p.Properties.Present & forwarded
	m.Properties.PayloadFormat = p.Properties.PayloadFormat
	m.Properties.ContentType = p.Properties.ContentType
	m.Properties.ResponseTopic = p.Properties.ResponseTopic
	m.Properties.CorrelationData = p.Properties.CorrelationData
	m.Properties.User = append(user, p.Properties.User...)
	m.Expiry = time.Time{}
	if p.Properties.Has(packet.PropMessageExpiry) {
		m.Expiry = now.Add(time.Duration(p.Properties.MessageExpiry) * time.Second)
	}
	m.Owned = false
}

// Expired reports whether the message has expired at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// RemainingExpiry returns the Message Expiry Interval to forward at now,
// rounded up so that a message not yet expired never reads 0, and whether
// the message has one.
func (m *Message) RemainingExpiry(now time.Time) (uint32, bool) {
	if m.Expiry.IsZero() {
		return 0, false
	}
	d := m.Expiry.Sub(now)
	if d <= 0 {
		return 0, true
	}
	return uint32((d + time.Second - 1) / time.Second), true
}

// Size returns the number of bytes the message holds, for quotas.
func (m *Message) Size() int {
	n := len(m.Topic) + len(m.Payload) + len(m.Properties.ContentType) +
		len(m.Properties.ResponseTopic) + len(m.Properties.CorrelationData)
	for _, u := range m.Properties.User {
		n += len(u.Key) + len(u.Value)
	}
	return n
}

// Own returns an owned message with the same content: m itself when it is
// already owned, else a copy made with one allocation for all its bytes.
func (m *Message) Own() *Message {
	if m.Owned {
		return m
	}
	c := &Message{QoS: m.QoS, Retain: m.Retain, Expiry: m.Expiry, Publisher: m.Publisher,
		PublisherKey: m.PublisherKey, Owned: true}
	arena := make([]byte, 0, m.Size())
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	c.Topic = take(m.Topic)
	c.Payload = take(m.Payload)
	c.Properties.Present = m.Properties.Present
	c.Properties.PayloadFormat = m.Properties.PayloadFormat
	c.Properties.ContentType = take(m.Properties.ContentType)
	c.Properties.ResponseTopic = take(m.Properties.ResponseTopic)
	c.Properties.CorrelationData = take(m.Properties.CorrelationData)
	if len(m.Properties.User) > 0 {
		c.Properties.User = make([]packet.UserProperty, len(m.Properties.User))
		for i, u := range m.Properties.User {
			c.Properties.User[i] = packet.UserProperty{Key: take(u.Key), Value: take(u.Value)}
		}
	}
	return c
}
