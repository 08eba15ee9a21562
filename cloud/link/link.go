// Package link is the runtime's MQTT connection between skybridge-cloud
// or skybridge-edge and the broker that carries their traffic (MQTT 5.0
// over mutual TLS, paho.golang's autopaho): it reconnects with
// exponential backoff and jitter, subscribes to one filter on every
// connection, and publishes QoS 1 from a bounded queue so that the core
// never waits for the network.
//
// It is a runtime package (goroutines, sockets): the simulator replaces
// it with its own client on the virtual network (sim/edgesim).
package link

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Config configures a Link.
type Config struct {
	// Broker is host:port of the broker's listener.
	Broker string
	// TLS returns the TLS configuration of the next connection attempt
	// (the client certificate may have been renewed since the last); nil
	// connects over plain TCP (a broker on the same machine).
	TLS      func() (*tls.Config, error)
	ClientID string
	// Filter is subscribed (QoS 1) on every connection; "" for none.
	Filter    string
	KeepAlive time.Duration // default 60s
	// QueueLen bounds the messages waiting to be sent (default 1024);
	// beyond, Publish refuses and counts.
	QueueLen int
	// Backoff bounds the delay between connection attempts (1s..60s).
	BackoffMin, BackoffMax time.Duration
	// OnUp runs when the link is connected and subscribed; OnDown when it
	// is lost. OnMessage gets each message of the filter (on paho's
	// goroutine: it must not block for long).
	OnUp      func()
	OnDown    func()
	OnMessage func(topic string, payload []byte)
	Logger    *slog.Logger
}

// Stats count what a link did.
type Stats struct {
	Connects, ConnectErrors, Published, PublishErrors, Dropped, Received atomic.Uint64
}

type outMsg struct {
	topic   string
	payload []byte
	retain  bool
}

// Link is a running connection.
type Link struct {
	cfg    Config
	log    *slog.Logger
	cm     *autopaho.ConnectionManager
	queue  chan outMsg
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	conn net.Conn // the current connection (Reconnect closes it)
	up   atomic.Bool

	Stats Stats
}

// Start connects (in the background) and keeps the link up until Close.
func Start(cfg Config) (*Link, error) {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= cfg.BackoffMin {
		cfg.BackoffMax = max(60*time.Second, 2*cfg.BackoffMin)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse("tls://" + cfg.Broker)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{cfg: cfg, log: log, queue: make(chan outMsg, cfg.QueueLen), ctx: ctx, cancel: cancel}
	acfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     uint16(cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(cfg.BackoffMin, cfg.BackoffMax, cfg.BackoffMin+1, 2),
		ConnectTimeout:                10 * time.Second,
		AttemptConnection:             l.dial,
		OnConnectionUp:                l.connected,
		OnConnectionDown: func() bool {
			if l.up.Swap(false) && cfg.OnDown != nil {
				cfg.OnDown()
			}
			return true
		},
		OnConnectError: func(err error) {
			l.Stats.ConnectErrors.Add(1)
			l.log.Debug("link: connection failed", "broker", cfg.Broker, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				l.Stats.Received.Add(1)
				if cfg.OnMessage != nil {
					cfg.OnMessage(pr.Packet.Topic, pr.Packet.Payload)
				}
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(ctx, acfg)
	if err != nil {
		cancel()
		return nil, err
	}
	l.cm = cm
	l.wg.Add(1)
	go l.send()
	return l, nil
}

// dial opens a TLS connection with the configuration of the moment.
func (l *Link) dial(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	var c net.Conn
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if l.cfg.TLS == nil {
		var err error
		if c, err = nd.DialContext(ctx, "tcp", u.Host); err != nil {
			return nil, err
		}
	} else {
		tcfg, err := l.cfg.TLS()
		if err != nil {
			return nil, err
		}
		d := tls.Dialer{Config: tcfg, NetDialer: nd}
		if c, err = d.DialContext(ctx, "tcp", u.Host); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	l.conn = c
	l.mu.Unlock()
	return packets.NewThreadSafeConn(c), nil
}

func (l *Link) connected(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	l.Stats.Connects.Add(1)
	if l.cfg.Filter == "" {
		l.becomeUp()
		return
	}
	go func() { // OnConnectionUp must not block
		ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
		defer cancel()
		sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: l.cfg.Filter, QoS: 1}}})
		if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
			l.log.Warn("link: subscribe refused", "filter", l.cfg.Filter, "err", err)
			l.Reconnect()
			return
		}
		l.becomeUp()
	}()
}

func (l *Link) becomeUp() {
	if !l.up.Swap(true) && l.cfg.OnUp != nil {
		l.cfg.OnUp()
	}
}

// Up reports whether the link is connected and subscribed.
func (l *Link) Up() bool { return l.up.Load() }

// Publish queues a QoS 1 message; false when the queue is full (the
// message is dropped and counted: the cores above recover from losses).
func (l *Link) Publish(topic string, payload []byte) bool {
	return l.enqueue(outMsg{topic: topic, payload: payload})
}

// PublishRetained is Publish with the RETAIN flag.
func (l *Link) PublishRetained(topic string, payload []byte) bool {
	return l.enqueue(outMsg{topic: topic, payload: payload, retain: true})
}

func (l *Link) enqueue(m outMsg) bool {
	select {
	case l.queue <- m:
		return true
	default:
		l.Stats.Dropped.Add(1)
		return false
	}
}

func (l *Link) send() {
	defer l.wg.Done()
	for {
		select {
		case <-l.ctx.Done():
			return
		case m := <-l.queue:
			ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
			_, err := l.cm.Publish(ctx, &paho.Publish{QoS: 1, Retain: m.retain, Topic: m.topic, Payload: m.payload})
			cancel()
			if err != nil {
				l.Stats.PublishErrors.Add(1)
				continue
			}
			l.Stats.Published.Add(1)
		}
	}
}

// Reconnect drops the current connection; the next attempt reads the TLS
// configuration again.
func (l *Link) Reconnect() {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// Close ends the link.
func (l *Link) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.cm.Disconnect(ctx)
	l.cancel()
	l.wg.Wait()
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
