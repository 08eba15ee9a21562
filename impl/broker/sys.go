package broker

import (
	"strconv"
	"time"

	"github.com/skybridge-mq/skybridge/impl/message"
)

// tenantStats are a tenant's own counters: what its $SYS topics (and its
// per-tenant metrics) report. No tenant sees another's.
type tenantStats struct {
	messagesIn  counter
	messagesOut counter
	bytesIn     counter
	dropped     counter
	throttled   counterArray
}

// StartSys publishes each tenant's statistics under $SYS/broker/ every
// interval, as retained QoS 0 messages, until StopSys. Only tenants with a
// connected client get an update. Called by the runtime once the broker
// serves (the core arms its own timer through env.Clock, it runs no loop).
func (b *Broker) StartSys(interval time.Duration, version string) {
	if interval <= 0 {
		return
	}
	b.mu.Lock()
	b.sysInterval, b.sysVersion, b.started = interval, version, b.env.Clock.Now()
	b.sysTimer = b.env.Clock.AfterFunc(interval, b.sysTick)
	b.mu.Unlock()
}

// StopSys stops the $SYS updates.
func (b *Broker) StopSys() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sysTimer != nil {
		b.sysTimer.Stop()
		b.sysTimer = nil
	}
}

func (b *Broker) sysTick() {
	b.mu.Lock()
	if b.sysTimer == nil {
		b.mu.Unlock()
		return
	}
	tenants := make([]*tenant, 0, len(b.tenants))
	for _, name := range b.tenantNamesLocked() {
		tenants = append(tenants, b.tenants[name])
	}
	b.mu.Unlock()
	now := b.env.Clock.Now()
	for _, t := range tenants {
		b.publishSys(t, now)
	}
	b.mu.Lock()
	if b.sysTimer != nil {
		b.sysTimer = b.env.Clock.AfterFunc(b.sysInterval, b.sysTick)
	}
	b.mu.Unlock()
}

// publishSys publishes one tenant's statistics.
func (b *Broker) publishSys(t *tenant, now time.Time) {
	t.regMu.Lock()
	sessions := len(t.sessions)
	connected := 0
	for _, e := range t.sessions {
		if e.online.Load() {
			connected++
		}
	}
	t.regMu.Unlock()
	if connected == 0 {
		return
	}
	t.routesMu.RLock()
	subs := t.routes.Len()
	t.routesMu.RUnlock()
	retained, _ := b.retained.Count(t.name)
	b.mu.Lock()
	uptime, version := now.Sub(b.started), b.sysVersion
	b.mu.Unlock()
	n := func(v uint64) string { return strconv.FormatUint(v, 10) }
	values := []struct{ topic, value string }{
		{"$SYS/broker/version", version},
		{"$SYS/broker/uptime", strconv.FormatInt(int64(uptime/time.Second), 10) + " seconds"},
		{"$SYS/broker/clients/connected", strconv.Itoa(connected)},
		{"$SYS/broker/sessions", strconv.Itoa(sessions)},
		{"$SYS/broker/subscriptions/count", strconv.Itoa(subs)},
		{"$SYS/broker/retained/count", strconv.Itoa(retained)},
		{"$SYS/broker/messages/received", n(t.stats.messagesIn.Load())},
		{"$SYS/broker/messages/sent", n(t.stats.messagesOut.Load())},
		{"$SYS/broker/messages/dropped", n(t.stats.dropped.Load())},
		{"$SYS/broker/bytes/received", n(t.stats.bytesIn.Load())},
	}
	var rs routeScratch
	for _, v := range values {
		m := &message.Message{Topic: []byte(v.topic), Payload: []byte(v.value), Retain: true, Owned: true}
		b.retained.Set(t.name, m) // statistics are not worth a disk write
		b.route(t, m, &rs, &instant{t: now}, nil)
		b.commitRoute(&rs)
	}
}

// tenantNamesLocked returns the tenant names in order; the caller holds b.mu.
func (b *Broker) tenantNamesLocked() []string {
	names := make([]string, 0, len(b.tenants))
	for n := range b.tenants {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}
