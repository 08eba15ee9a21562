package packet

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            []byte
	QoS               QoS
	NoLocal           bool // 5.0
	RetainAsPublished bool // 5.0
	RetainHandling    byte // 5.0: 0 send retained, 1 only if new, 2 never
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // 5.0 only
	Subscriptions []Subscription
}

// Type implements Packet.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Decode implements Packet.
func (p *Subscribe) Decode(h FixedHeader, body []byte, v Version) error {
	p.Subscriptions = p.Subscriptions[:0]
	p.Properties.Reset()
	if err := checkFlags(h); err != nil {
		err.Statement = stmt(v, "MQTT-3.8.1-1", "MQTT-3.8.1-1")
		return err
	}
	c := cursor{b: body, t: SUBSCRIBE}
	var err error
	if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return protocolErr(SUBSCRIBE, stmt(v, "MQTT-2.2.1-3", "MQTT-2.3.1-1"), "packet identifier 0")
	}
	if v == V5 {
		if err := p.Properties.decode(&c, SUBSCRIBE); err != nil {
			return err
		}
	}
	for c.remaining() > 0 {
		f, err := c.readString("topic filter")
		if err != nil {
			return err
		}
		o, err := c.readByte("subscription options")
		if err != nil {
			return err
		}
		s := Subscription{Filter: f, QoS: QoS(o & 0x03)}
		if v == V5 {
			if o&0xc0 != 0 {
				return malformed(SUBSCRIBE, "MQTT-3.8.3-5", "reserved subscription option bits set")
			}
			s.NoLocal = o&0x04 != 0
			s.RetainAsPublished = o&0x08 != 0
			s.RetainHandling = o >> 4 & 0x03
			if s.RetainHandling == 3 {
				return protocolErr(SUBSCRIBE, "", "retain handling 3")
			}
		} else if o&0xfc != 0 {
			return malformed(SUBSCRIBE, "MQTT-3.8.3-4", "reserved requested-QoS bits set")
		}
		if s.QoS > QoS2 {
			if v == V5 {
				return protocolErr(SUBSCRIBE, "", "maximum QoS 3")
			}
			return malformed(SUBSCRIBE, "MQTT-3.8.3-4", "requested QoS 3")
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	if len(p.Subscriptions) == 0 {
		return protocolErr(SUBSCRIBE, stmt(v, "MQTT-3.8.3-2", "MQTT-3.8.3-3"), "no topic filter")
	}
	return nil
}

func (p *Subscribe) bodySize(v Version) int {
	n := 2
	if v == V5 {
		n += p.Properties.size()
	}
	for i := range p.Subscriptions {
		n += 2 + len(p.Subscriptions[i].Filter) + 1
	}
	return n
}

// Size implements Packet.
func (p *Subscribe) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Subscribe) Append(dst []byte, v Version) ([]byte, error) {
	if v == V5 {
		if err := p.Properties.check(SUBSCRIBE); err != nil {
			return dst, err
		}
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		if len(s.Filter) > 65535 || s.QoS > QoS2 || s.RetainHandling > 2 {
			return dst, encodeErr(SUBSCRIBE, "subscription %d out of range", i)
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(SUBSCRIBE, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, SUBSCRIBE, 0x02, b)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		dst = appendBinary(dst, s.Filter)
		o := byte(s.QoS)
		if v == V5 {
			if s.NoLocal {
				o |= 0x04
			}
			if s.RetainAsPublished {
				o |= 0x08
			}
			o |= s.RetainHandling << 4
		}
		dst = append(dst, o)
	}
	return dst, nil
}

// Suback is the SUBACK packet: one reason code (return code in 3.1.1) per
// topic filter of the SUBSCRIBE, in order.
type Suback struct {
	PacketID    uint16
	Properties  Properties // 5.0 only
	ReasonCodes []ReasonCode
}

// Type implements Packet.
func (*Suback) Type() Type { return SUBACK }

// Decode implements Packet.
func (p *Suback) Decode(h FixedHeader, body []byte, v Version) error {
	p.ReasonCodes = p.ReasonCodes[:0]
	p.Properties.Reset()
	if err := checkFlags(h); err != nil {
		return err
	}
	c := cursor{b: body, t: SUBACK}
	var err error
	if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
		return err
	}
	if v == V5 {
		if err := p.Properties.decode(&c, SUBACK); err != nil {
			return err
		}
	}
	for c.remaining() > 0 {
		rc, _ := c.readByte("reason code")
		r := ReasonCode(rc)
		if v == V5 && !r.ValidFor(SUBACK) || v != V5 && rc > 2 && rc != 0x80 {
			return protocolErr(SUBACK, "", "reason code 0x%x not valid", rc)
		}
		p.ReasonCodes = append(p.ReasonCodes, r)
	}
	if len(p.ReasonCodes) == 0 {
		return protocolErr(SUBACK, "", "no reason code")
	}
	return nil
}

func (p *Suback) bodySize(v Version) int {
	n := 2 + len(p.ReasonCodes)
	if v == V5 {
		n += p.Properties.size()
	}
	return n
}

// Size implements Packet.
func (p *Suback) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Suback) Append(dst []byte, v Version) ([]byte, error) {
	if v == V5 {
		if err := p.Properties.check(SUBACK); err != nil {
			return dst, err
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(SUBACK, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, SUBACK, 0, b)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	for _, r := range p.ReasonCodes {
		dst = append(dst, byte(r))
	}
	return dst, nil
}
