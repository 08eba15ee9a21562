package conformance

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

var (
	runID   = fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	counter atomic.Uint64
	nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)
)

// uniqueID returns a client identifier unique to this run, at most 23
// characters from the set every server must accept [MQTT-3.1.3-5].
func uniqueID(t testing.TB) string {
	id := fmt.Sprintf("c%s%d", runID, counter.Add(1))
	if len(id) > 23 {
		id = id[len(id)-23:]
	}
	return id
}

// Topic returns a topic prefix unique to the test and this run, so that
// tests running in parallel, or against a broker with state from earlier
// runs, never see each other's messages.
func Topic(t testing.TB) string {
	name := nonWord.ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("conformance/%s/%s-%d", runID, strings.Trim(name, "-"), counter.Add(1))
}

// CleanRetained arranges for the retained message on each topic to be
// deleted when the test ends.
func CleanRetained(t testing.TB, topics ...string) {
	t.Cleanup(func() {
		c, err := target.Dial()
		if err != nil {
			return
		}
		defer c.Close()
		conn := &packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 10, ClientID: []byte(uniqueID(t))}
		if target.Username != "" {
			conn.UsernameFlag, conn.Username = true, []byte(target.Username)
		}
		if target.Password != "" {
			conn.PasswordFlag, conn.Password = true, []byte(target.Password)
		}
		buf, _ := conn.Append(nil, packet.V311)
		for _, topic := range topics {
			buf, _ = (&packet.Publish{Retain: true, Topic: []byte(topic)}).Append(buf, packet.V311)
		}
		buf, _ = (&packet.Disconnect{}).Append(buf, packet.V311)
		_ = c.SetDeadline(time.Now().Add(waitFor))
		_, _ = c.Write(buf)
		// Wait for CONNACK and the close so the deletes are processed.
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	})
}

// CleanSession arranges for the persistent session of clientID to be
// discarded when the test ends.
func CleanSession(t testing.TB, clientID string) {
	t.Cleanup(func() {
		c, err := target.Dial()
		if err != nil {
			return
		}
		defer c.Close()
		conn := &packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 10, ClientID: []byte(clientID)}
		if target.Username != "" {
			conn.UsernameFlag, conn.Username = true, []byte(target.Username)
		}
		if target.Password != "" {
			conn.PasswordFlag, conn.Password = true, []byte(target.Password)
		}
		buf, _ := conn.Append(nil, packet.V5)
		buf, _ = (&packet.Disconnect{}).Append(buf, packet.V5)
		_ = c.SetDeadline(time.Now().Add(waitFor))
		_, _ = c.Write(buf)
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	})
}

// Features is what the broker announced in a 5.0 CONNACK.
type Features struct {
	MaximumQoS        packet.QoS
	RetainAvailable   bool
	WildcardSubs      bool
	SubscriptionIDs   bool
	SharedSubs        bool
	TopicAliasMaximum uint16
	ReceiveMaximum    uint16
	MaximumPacketSize uint32 // 0: no limit announced
	ServerKeepAlive   uint16 // 0: not announced
	CONNACK           *packet.Connack
}

var features *Features

// discover connects once with 5.0 and reads the broker's optional features.
func discover() (*Features, error) {
	c, err := target.Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	conn := &packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: []byte("discover" + runID)}
	if target.Username != "" {
		conn.UsernameFlag, conn.Username = true, []byte(target.Username)
	}
	if target.Password != "" {
		conn.PasswordFlag, conn.Password = true, []byte(target.Password)
	}
	b, _ := conn.Append(nil, packet.V5)
	_ = c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	d := packet.NewDecoder(c, packet.V5)
	p, err := d.Next()
	if err != nil {
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok || ack.ReasonCode != packet.Success {
		return nil, fmt.Errorf("broker refused a plain 5.0 CONNECT: %+v", p)
	}
	f := &Features{MaximumQoS: packet.QoS2, RetainAvailable: true, WildcardSubs: true, SubscriptionIDs: true,
		SharedSubs: true, ReceiveMaximum: 65535, CONNACK: ack}
	pr := &ack.Properties
	if pr.Has(packet.PropMaximumQoS) {
		f.MaximumQoS = packet.QoS(pr.MaximumQoS)
	}
	if pr.Has(packet.PropRetainAvailable) {
		f.RetainAvailable = pr.RetainAvailable == 1
	}
	if pr.Has(packet.PropWildcardSubAvailable) {
		f.WildcardSubs = pr.WildcardSubAvail == 1
	}
	if pr.Has(packet.PropSubIDAvailable) {
		f.SubscriptionIDs = pr.SubIDAvail == 1
	}
	if pr.Has(packet.PropSharedSubAvailable) {
		f.SharedSubs = pr.SharedSubAvail == 1
	}
	if pr.Has(packet.PropReceiveMaximum) {
		f.ReceiveMaximum = pr.ReceiveMaximum
	}
	f.TopicAliasMaximum = pr.TopicAliasMaximum
	f.MaximumPacketSize = pr.MaximumPacketSize
	f.ServerKeepAlive = pr.ServerKeepAlive
	// Detach the CONNACK from the decoder's memory.
	enc, _ := ack.Append(nil, packet.V5)
	own := packet.NewDecoder(strings.NewReader(string(enc)), packet.V5)
	cp, _ := own.Next()
	f.CONNACK = cp.(*packet.Connack)
	b, _ = (&packet.Disconnect{}).Append(nil, packet.V5)
	_, _ = c.Write(b)
	return f, nil
}

// Require skips the test unless the broker offers a feature.
func Require(t testing.TB, ok bool, feature string) {
	t.Helper()
	if !ok {
		t.Skipf("broker does not offer %s (from its CONNACK)", feature)
	}
}
