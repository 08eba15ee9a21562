package event

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// Type says what happened.
type Type uint8

// Event types. The fields each one fills besides Time, Tenant, ClientID
// and User are listed with it.
const (
	Connected           Type = iota + 1 // Listener, Remote, Detail (protocol version)
	Disconnected                        // Reason, Detail (cause: client_disconnect, keep_alive_timeout, ...)
	AuthFailed                          // Reason, Listener, Remote
	MessageDropped                      // Detail (drop reason), Count
	Throttled                           // Detail (what)
	InboxOverflow                       // Count (messages dropped)
	SessionExpired                      //
	WillPublished                       // Detail (topic)
	SubscriptionRefused                 // Reason, Detail (filter)
	PublishRefused                      // Reason, Detail (topic)
	TokenExpired                        // (the client is disconnected)
	ReauthFailed                        // Reason
	numTypes
)

// NumTypes is one more than the largest Type, for arrays indexed by Type.
const NumTypes = int(numTypes)

var typeNames = [numTypes]string{
	Connected:           "connected",
	Disconnected:        "disconnected",
	AuthFailed:          "auth_failed",
	MessageDropped:      "message_dropped",
	Throttled:           "throttled",
	InboxOverflow:       "inbox_overflow",
	SessionExpired:      "session_expired",
	WillPublished:       "will_published",
	SubscriptionRefused: "subscription_refused",
	PublishRefused:      "publish_refused",
	TokenExpired:        "token_expired",
	ReauthFailed:        "reauth_failed",
}

// Types lists every event type, in order.
func Types() []Type {
	out := make([]Type, 0, numTypes-1)
	for t := Connected; t < numTypes; t++ {
		out = append(out, t)
	}
	return out
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t >= Connected && t < numTypes }

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("type_%d", uint8(t))
}

// MarshalText writes the type's name.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a type's name.
func (t *Type) UnmarshalText(b []byte) error {
	for i := Connected; i < numTypes; i++ {
		if typeNames[i] == string(b) {
			*t = i
			return nil
		}
	}
	return fmt.Errorf("event: unknown type %q", b)
}

// Level is the log level of an event of type t with reason code r: warn
// for what an operator should look at (refusals, drops, throttling),
// info for the normal life of a client.
func (t Type) Level(r packet.ReasonCode) slog.Level {
	switch t {
	case AuthFailed, MessageDropped, Throttled, InboxOverflow, ReauthFailed:
		return slog.LevelWarn
	case Disconnected:
		if r.IsError() {
			return slog.LevelWarn
		}
	}
	return slog.LevelInfo
}

// Event is one thing that happened to a client of a tenant.
type Event struct {
	Type Type
	// Time is when it happened, from the broker's env.Clock.
	Time     time.Time
	Tenant   string
	ClientID string
	User     string
	Listener string
	Remote   string
	// Reason is the MQTT reason code involved (0 when none).
	Reason packet.ReasonCode
	// Detail is a type-specific string: a drop reason, what was
	// throttled, a topic or filter, a protocol version.
	Detail string
	// Count is how many things the event stands for (messages dropped);
	// 0 means one.
	Count uint64
}

// N is how many things the event stands for: Count, or 1 when Count is 0.
func (e *Event) N() uint64 {
	if e.Count == 0 {
		return 1
	}
	return e.Count
}

// jsonEvent is the JSON form (the webhook sink's body).
type jsonEvent struct {
	Type       Type   `json:"type"`
	Time       string `json:"time"`
	Tenant     string `json:"tenant"`
	ClientID   string `json:"clientid,omitempty"`
	User       string `json:"user,omitempty"`
	Listener   string `json:"listener,omitempty"`
	Remote     string `json:"remote,omitempty"`
	Reason     uint8  `json:"reason"`
	ReasonName string `json:"reason_name,omitempty"`
	Detail     string `json:"detail,omitempty"`
	Count      uint64 `json:"count,omitempty"`
}

// MarshalJSON writes the event as an object with snake_case keys, the time
// in RFC 3339 with nanoseconds, and the reason both as a number and by
// name (for reasons other than 0).
func (e Event) MarshalJSON() ([]byte, error) {
	j := jsonEvent{Type: e.Type, Time: e.Time.UTC().Format(time.RFC3339Nano), Tenant: e.Tenant,
		ClientID: e.ClientID, User: e.User, Listener: e.Listener, Remote: e.Remote,
		Reason: uint8(e.Reason), Detail: e.Detail, Count: e.Count}
	if e.Reason != 0 {
		j.ReasonName = reasonName(e.Reason)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j jsonEvent
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("event: time: %w", err)
	}
	*e = Event{Type: j.Type, Time: t, Tenant: j.Tenant, ClientID: j.ClientID, User: j.User,
		Listener: j.Listener, Remote: j.Remote, Reason: packet.ReasonCode(j.Reason), Detail: j.Detail, Count: j.Count}
	return nil
}

// reasonName is the code's name without the hex suffix String adds.
func reasonName(r packet.ReasonCode) string {
	s := r.String()
	if i := len(s) - 1; i > 0 && s[i] == ')' {
		for j := i; j >= 0; j-- {
			if s[j] == '(' {
				if j > 0 && s[j-1] == ' ' {
					return s[:j-1]
				}
				break
			}
		}
	}
	return s
}

// Who identifies the client an event is about.
type Who struct {
	Tenant, ClientID, User string
}

func (w Who) event(t Type, at time.Time) Event {
	return Event{Type: t, Time: at, Tenant: w.Tenant, ClientID: w.ClientID, User: w.User}
}

// NewConnected is a Connected event; version is the protocol version
// ("3.1", "3.1.1", "5.0").
func NewConnected(at time.Time, w Who, listener, remote, version string) Event {
	e := w.event(Connected, at)
	e.Listener, e.Remote, e.Detail = listener, remote, version
	return e
}

// NewDisconnected is a Disconnected event with the reason the connection
// ended with.
func NewDisconnected(at time.Time, w Who, reason packet.ReasonCode, cause string) Event {
	e := w.event(Disconnected, at)
	e.Reason, e.Detail = reason, cause
	return e
}

// NewAuthFailed is an AuthFailed event with the CONNACK reason.
func NewAuthFailed(at time.Time, w Who, reason packet.ReasonCode, listener, remote string) Event {
	e := w.event(AuthFailed, at)
	e.Reason, e.Listener, e.Remote = reason, listener, remote
	return e
}

// NewMessageDropped is a MessageDropped event: count messages dropped
// for reason.
func NewMessageDropped(at time.Time, w Who, reason string, count uint64) Event {
	e := w.event(MessageDropped, at)
	e.Detail, e.Count = reason, count
	return e
}

// NewThrottled is a Throttled event: what was throttled.
func NewThrottled(at time.Time, w Who, what string) Event {
	e := w.event(Throttled, at)
	e.Detail = what
	return e
}

// NewInboxOverflow is an InboxOverflow event: count messages did not fit.
func NewInboxOverflow(at time.Time, w Who, count uint64) Event {
	e := w.event(InboxOverflow, at)
	e.Count = count
	return e
}

// NewSessionExpired is a SessionExpired event.
func NewSessionExpired(at time.Time, w Who) Event { return w.event(SessionExpired, at) }

// NewWillPublished is a WillPublished event for a will on topic.
func NewWillPublished(at time.Time, w Who, topic string) Event {
	e := w.event(WillPublished, at)
	e.Detail = topic
	return e
}

// NewSubscriptionRefused is a SubscriptionRefused event for filter.
func NewSubscriptionRefused(at time.Time, w Who, filter string, reason packet.ReasonCode) Event {
	e := w.event(SubscriptionRefused, at)
	e.Detail, e.Reason = filter, reason
	return e
}

// NewPublishRefused is a PublishRefused event for topic.
func NewPublishRefused(at time.Time, w Who, topic string, reason packet.ReasonCode) Event {
	e := w.event(PublishRefused, at)
	e.Detail, e.Reason = topic, reason
	return e
}

// NewTokenExpired is a TokenExpired event.
func NewTokenExpired(at time.Time, w Who) Event { return w.event(TokenExpired, at) }

// NewReauthFailed is a ReauthFailed event.
func NewReauthFailed(at time.Time, w Who, reason packet.ReasonCode) Event {
	e := w.event(ReauthFailed, at)
	e.Reason = reason
	return e
}
