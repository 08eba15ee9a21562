package packet

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties // 5.0 only
	Filters    [][]byte
}

// Type implements Packet.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Decode implements Packet.
func (p *Unsubscribe) Decode(h FixedHeader, body []byte, v Version) error {
	p.Filters = p.Filters[:0]
	p.Properties.Reset()
	if err := checkFlags(h); err != nil {
		err.Statement = stmt(v, "MQTT-3.10.1-1", "MQTT-3.10.1-1")
		return err
	}
	c := cursor{b: body, t: UNSUBSCRIBE}
	var err error
	if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return protocolErr(UNSUBSCRIBE, stmt(v, "MQTT-2.2.1-3", "MQTT-2.3.1-1"), "packet identifier 0")
	}
	if v == V5 {
		if err := p.Properties.decode(&c, UNSUBSCRIBE); err != nil {
			return err
		}
	}
	for c.remaining() > 0 {
		f, err := c.readString("topic filter")
		if err != nil {
			return err
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return protocolErr(UNSUBSCRIBE, stmt(v, "MQTT-3.10.3-2", "MQTT-3.10.3-2"), "no topic filter")
	}
	return nil
}

func (p *Unsubscribe) bodySize(v Version) int {
	n := 2
	if v == V5 {
		n += p.Properties.size()
	}
	for _, f := range p.Filters {
		n += 2 + len(f)
	}
	return n
}

// Size implements Packet.
func (p *Unsubscribe) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	if v == V5 {
		if err := p.Properties.check(UNSUBSCRIBE); err != nil {
			return dst, err
		}
	}
	for _, f := range p.Filters {
		if len(f) > 65535 {
			return dst, encodeErr(UNSUBSCRIBE, "filter longer than 65535 bytes")
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(UNSUBSCRIBE, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, UNSUBSCRIBE, 0x02, b)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	for _, f := range p.Filters {
		dst = appendBinary(dst, f)
	}
	return dst, nil
}

// Unsuback is the UNSUBACK packet. 3.1.1 has no reason codes.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties   // 5.0 only
	ReasonCodes []ReasonCode // 5.0 only
}

// Type implements Packet.
func (*Unsuback) Type() Type { return UNSUBACK }

// Decode implements Packet.
func (p *Unsuback) Decode(h FixedHeader, body []byte, v Version) error {
	p.ReasonCodes = p.ReasonCodes[:0]
	p.Properties.Reset()
	if err := checkFlags(h); err != nil {
		return err
	}
	c := cursor{b: body, t: UNSUBACK}
	var err error
	if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
		return err
	}
	if v == V5 {
		if err := p.Properties.decode(&c, UNSUBACK); err != nil {
			return err
		}
		for c.remaining() > 0 {
			rc, _ := c.readByte("reason code")
			if !ReasonCode(rc).ValidFor(UNSUBACK) {
				return protocolErr(UNSUBACK, "", "reason code 0x%x not valid", rc)
			}
			p.ReasonCodes = append(p.ReasonCodes, ReasonCode(rc))
		}
		if len(p.ReasonCodes) == 0 {
			return protocolErr(UNSUBACK, "", "no reason code")
		}
	}
	if c.remaining() != 0 {
		return malformed(UNSUBACK, "", "%d extra bytes", c.remaining())
	}
	return nil
}

func (p *Unsuback) bodySize(v Version) int {
	if v != V5 {
		return 2
	}
	return 2 + p.Properties.size() + len(p.ReasonCodes)
}

// Size implements Packet.
func (p *Unsuback) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Unsuback) Append(dst []byte, v Version) ([]byte, error) {
	if v == V5 {
		if err := p.Properties.check(UNSUBACK); err != nil {
			return dst, err
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(UNSUBACK, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, UNSUBACK, 0, b)
	dst = appendUint16(dst, p.PacketID)
	if v == V5 {
		dst = p.Properties.append(dst)
		for _, r := range p.ReasonCodes {
			dst = append(dst, byte(r))
		}
	}
	return dst, nil
}
