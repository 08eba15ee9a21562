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
//
// An owned message may also be counted (Share): it then comes from a pool
// and goes back to it when the last of its holders calls Release, so that
// routing a message to subscribers that acknowledge it allocates nothing.
// Every holder of a counted message took a reference (Share or Ref) and
// calls Release exactly once, after which it must not touch the message.
// A holder that cannot say when it is done (a retained store, a durable
// queue) keeps a message from Own, which is never counted: Ref and Release
// do nothing on it, and the garbage collector frees it.
package message

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/skybridge-mq/skybridge/impl/packet"
	"github.com/skybridge-mq/skybridge/impl/topic"
)

// Message is an application message.
type Message struct {
	// refs counts the holders of a counted message; class is the pool it
	// returns to (0: not counted). First, so that a release touches one
	// cache line.
	refs  int32
	class uint8

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

	arena []byte // a counted message's reusable byte storage
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

// Size returns what the message costs in memory, for quotas (inbox bytes,
// retained bytes, fan-out rates): its bytes (topic, payload, every
// property) and what each user property costs beyond its bytes. An empty
// user property is 5 bytes on the wire and a slice-header pair in memory,
// so counting bytes alone let 200,000 of them pass as nothing.
func (m *Message) Size() int {
	return SizeOf(m.Topic, m.Payload, &m.Properties)
}

// SizeOf is Size for a message not yet made: a PUBLISH's or a will's parts.
func SizeOf(topic, payload []byte, p *packet.Properties) int {
	return len(topic) + len(payload) + propertyBytes(p) + len(p.User)*UserPropertyOverhead
}

// UserPropertyOverhead is the memory a user property takes beyond its key
// and value: its packet.UserProperty (two slice headers).
const UserPropertyOverhead = int(unsafe.Sizeof(packet.UserProperty{}))

// UserPropertyBytes returns the bytes of p's user properties (keys and
// values).
func UserPropertyBytes(p *packet.Properties) int {
	n := 0
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value)
	}
	return n
}

// propertyBytes returns the bytes of the variable-length properties a
// message carries.
func propertyBytes(p *packet.Properties) int {
	return len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData) + UserPropertyBytes(p)
}

// byteLen returns the bytes a copy of the message needs in its arena.
func (m *Message) byteLen() int {
	return len(m.Topic) + len(m.Payload) + propertyBytes(&m.Properties)
}

// Own returns an owned message with the same content: m itself when it is
// already owned, else a copy made with one allocation for all its bytes.
func (m *Message) Own() *Message {
	if m.Owned {
		return m
	}
	return m.copy()
}

// copy returns an owned copy of m that is not counted.
func (m *Message) copy() *Message {
	c := &Message{}
	m.copyTo(c, make([]byte, 0, m.byteLen()), nil)
	return c
}

// copyTo makes c an owned copy of m, its bytes in arena (of capacity at
// least m.byteLen()) and its user properties in users.
func (m *Message) copyTo(c *Message, arena []byte, users []packet.UserProperty) {
	c.QoS, c.Retain, c.Expiry, c.Publisher, c.PublisherKey, c.Owned =
		m.QoS, m.Retain, m.Expiry, m.Publisher, m.PublisherKey, true
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
	// Every property is written (a pooled message keeps its last content).
	c.Properties = packet.Properties{Present: m.Properties.Present, PayloadFormat: m.Properties.PayloadFormat,
		ContentType: take(m.Properties.ContentType), ResponseTopic: take(m.Properties.ResponseTopic),
		CorrelationData: take(m.Properties.CorrelationData)}
	users = users[:0] // a pooled message's, kept for reuse (nil for Own)
	for _, u := range m.Properties.User {
		users = append(users, packet.UserProperty{Key: take(u.Key), Value: take(u.Value)})
	}
	c.Properties.User = users
	c.arena = arena
}

// classSizes are the arena capacities of the pools of counted messages; a
// larger message is not counted (it is rare, and would keep its pool's
// memory large).
var classSizes = [...]int{0, 128, 512, 2 << 10, 8 << 10, 32 << 10, 128 << 10}

var pools [len(classSizes)]sync.Pool

func init() {
	for i := 1; i < len(classSizes); i++ {
		size := classSizes[i]
		pools[i].New = func() any { return &Message{class: uint8(i), arena: make([]byte, 0, size)} }
	}
}

// classOf returns the pool for a message of size bytes, or 0.
func classOf(size int) int {
	for i := 1; i < len(classSizes); i++ {
		if size <= classSizes[i] {
			return i
		}
	}
	return 0
}

// Share returns an owned message with the same content that the caller
// holds one reference to, to be given back with Release. A borrowed
// message is copied into a counted message from a pool (or, when too
// large for any, into one from Own); an owned one is m itself with one
// more reference.
func (m *Message) Share() *Message {
	if m.Owned {
		return m.Ref()
	}
	size := m.byteLen()
	class := classOf(size)
	if class == 0 {
		return m.Own()
	}
	c := pools[class].Get().(*Message)
	m.copyTo(c, c.arena[:0], c.Properties.User)
	c.refs = 1
	return c
}

// Uncounted returns m when it is not counted, else an owned copy that is,
// for a holder that cannot say when it is done with it. m may be nil.
func (m *Message) Uncounted() *Message {
	if m == nil || m.class == 0 {
		return m
	}
	return m.copy()
}

// Ref takes one more reference to a counted message, and returns it.
func (m *Message) Ref() *Message {
	if m.class != 0 {
		atomic.AddInt32(&m.refs, 1)
	}
	return m
}

// Release gives back one reference to a counted message; the last one
// returns it to its pool. It does nothing on a message that is not
// counted.
func (m *Message) Release() {
	if m.class == 0 {
		return
	}
	switch n := atomic.AddInt32(&m.refs, -1); {
	case n > 0:
		return
	case n < 0:
		// A holder released twice: the message may already serve another
		// publish. Carrying on would deliver one client's bytes to another.
		panic(fmt.Sprintf("message: Release of a message with %d references", n+1))
	}
	// Not cleared: what it holds points into its own arena, and Share
	// writes every field again. A user-property slice grown by an unusual
	// message is not kept in the pool.
	if cap(m.Properties.User) > maxPooledUserProperties {
		m.Properties.User = nil
	}
	poison(m.arena[:cap(m.arena)])
	pools[m.class].Put(m)
}

// maxPooledUserProperties bounds the user-property slice a pooled message
// keeps for reuse.
const maxPooledUserProperties = 64
