package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/packet"
)

// The load generator speaks MQTT through a lean client written on the
// project's own codec rather than through paho: encoding and decoding a
// PUBLISH allocate nothing, a publisher packs many PUBLISH packets into one
// write, and a subscriber acknowledges a whole read batch in one write. The
// measurement that decided it is in bench/README.md ("Why a lean client").

// dialConfig says how to open one MQTT connection.
type dialConfig struct {
	Addr      string // broker host:port
	LocalIP   net.IP // source address to bind (nil: any)
	Version   packet.Version
	Clean     bool   // clean session (3.1.1) / clean start (5.0)
	Expiry    uint32 // 5.0 session expiry interval for persistent sessions
	KeepAlive uint16 // seconds
	ClientID  string
	Inflight  uint16        // 5.0 receive maximum announced to the broker (0: default)
	Timeout   time.Duration // bounds the TCP connect and the wait for CONNACK
	ReadBuf   int           // size of the read buffer
	// SendBuf sets SO_SNDBUF (0: the kernel's autotuning). A bounded send
	// buffer keeps a flooding publisher from parking megabytes in the
	// kernel, which would turn saturation latency into buffer time.
	SendBuf int
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), which the
// syscall package does not name.
const ipBindAddressNoPort = 24

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket about to be bound to a
// source address: the kernel then picks its ephemeral port at connect, unique
// per (source, destination) rather than per source address alone, so the
// ports a previous run left in TIME_WAIT towards another broker port do not
// count against this run. Without it, 16 source addresses hold at most
// 16 x 28,232 bound ports (ip_local_port_range 32768-60999) in total,
// TIME_WAIT included: a 250,000-connection run right after another would not
// fit. Best effort: a kernel without the option (before 4.2) binds as before.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}

// mqttConn is one MQTT connection.
type mqttConn struct {
	nc      net.Conn
	v       packet.Version
	r       *packet.Reader
	wmu     sync.Mutex // serialises writes of the publishing and the reading goroutine
	present bool       // session present in CONNACK
	// serverInflight is the broker's Receive Maximum (5.0), 0 when not announced.
	serverInflight uint16
}

// errRefused is returned when the broker answers CONNECT with an error code.
type errRefused struct{ code packet.ReasonCode }

func (e errRefused) Error() string {
	return fmt.Sprintf("broker refused the connection: CONNACK 0x%02x (%s)", byte(e.code), e.code)
}

// dial opens a TCP connection (bound to cfg.LocalIP), sends CONNECT and waits
// for CONNACK, all within cfg.Timeout.
func dial(cfg dialConfig) (*mqttConn, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	deadline := time.Now().Add(cfg.Timeout)
	d := net.Dialer{Deadline: deadline}
	if cfg.LocalIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalIP}
		d.Control = bindNoPort
	}
	nc, err := d.Dial("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		if cfg.SendBuf > 0 {
			_ = tc.SetWriteBuffer(cfg.SendBuf)
		}
	}
	c, err := handshake(nc, cfg, deadline)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(nc net.Conn, cfg dialConfig, deadline time.Time) (*mqttConn, error) {
	v := cfg.Version
	if v == 0 {
		v = packet.V311
	}
	c := &mqttConn{nc: nc, v: v, r: packet.NewReader(nc, cfg.ReadBuf)}
	cp := packet.Connect{Version: v, CleanStart: cfg.Clean, KeepAlive: cfg.KeepAlive, ClientID: []byte(cfg.ClientID)}
	if v == packet.V5 {
		if !cfg.Clean || cfg.Expiry > 0 {
			cp.Properties.Set(packet.PropSessionExpiry)
			cp.Properties.SessionExpiry = cfg.Expiry
		}
		if cfg.Inflight > 0 {
			cp.Properties.Set(packet.PropReceiveMaximum)
			cp.Properties.ReceiveMaximum = cfg.Inflight
		}
	}
	_ = nc.SetDeadline(deadline)
	if err := c.writePacket(&cp); err != nil {
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	h, body, err := c.r.ReadPacket()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("broker closed the connection before CONNACK")
		}
		return nil, fmt.Errorf("wait for CONNACK: %w", err)
	}
	if h.Type != packet.CONNACK {
		return nil, fmt.Errorf("expected CONNACK, got %s", h.Type)
	}
	var ack packet.Connack
	if err := ack.Decode(h, body, v); err != nil {
		return nil, fmt.Errorf("decode CONNACK: %w", err)
	}
	if ack.ReasonCode != 0 {
		return nil, errRefused{ack.ReasonCode}
	}
	c.present = ack.SessionPresent
	if ack.Properties.Has(packet.PropReceiveMaximum) {
		c.serverInflight = ack.Properties.ReceiveMaximum
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// writePacket encodes p and writes it under the write lock.
func (c *mqttConn) writePacket(p packet.Packet) error {
	b, err := packet.Encode(p, c.v)
	if err != nil {
		return err
	}
	return c.write(b, 0)
}

// write writes b under the write lock, with a deadline when timeout > 0.
func (c *mqttConn) write(b []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := c.nc.Write(b)
	return err
}

// subscribe sends one SUBSCRIBE with the filters and waits for its SUBACK
// (within timeout), failing when the broker refuses any filter. Packets
// other than SUBACK that arrive first (retained messages) are passed to
// onOther, which may be nil.
func (c *mqttConn) subscribe(filters []string, qos packet.QoS, timeout time.Duration, onOther func(packet.FixedHeader, []byte) error) error {
	sp := packet.Subscribe{PacketID: 1}
	for _, f := range filters {
		sp.Subscriptions = append(sp.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: qos})
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer c.nc.SetReadDeadline(time.Time{})
	if err := c.writePacket(&sp); err != nil {
		return fmt.Errorf("send SUBSCRIBE: %w", err)
	}
	for {
		h, body, err := c.r.ReadPacket()
		if err != nil {
			return fmt.Errorf("wait for SUBACK: %w", err)
		}
		if h.Type != packet.SUBACK {
			if onOther != nil {
				if err := onOther(h, body); err != nil {
					return err
				}
			}
			continue
		}
		var ack packet.Suback
		if err := ack.Decode(h, body, c.v); err != nil {
			return fmt.Errorf("decode SUBACK: %w", err)
		}
		for i, rc := range ack.ReasonCodes {
			if rc >= 0x80 {
				f := "?"
				if i < len(filters) {
					f = filters[i]
				}
				return fmt.Errorf("broker refused subscription %q: SUBACK 0x%02x", f, byte(rc))
			}
		}
		return nil
	}
}

// ping sends PINGREQ and waits for PINGRESP within timeout; the connection
// must have no other reader.
func (c *mqttConn) ping(timeout time.Duration) error {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := c.writePacket(&packet.Pingreq{}); err != nil {
		return err
	}
	for {
		h, _, err := c.r.ReadPacket()
		if err != nil {
			return err
		}
		if h.Type == packet.PINGRESP {
			return nil
		}
	}
}

// disconnect sends DISCONNECT (best effort, bounded) and closes.
func (c *mqttConn) disconnect() {
	var b [4]byte
	out, _ := (&packet.Disconnect{}).Append(b[:0], c.v)
	_ = c.write(out, 200*time.Millisecond)
	c.nc.Close()
}
