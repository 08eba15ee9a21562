package packet

// Publish is the PUBLISH packet. Topic and Payload alias the decoded body.
type Publish struct {
	Dup        bool
	QoS        QoS
	Retain     bool
	Topic      []byte
	PacketID   uint16 // QoS 1 and 2 only
	Properties Properties
	Payload    []byte
}

// Type implements Packet.
func (*Publish) Type() Type { return PUBLISH }

// Decode implements Packet.
func (p *Publish) Decode(h FixedHeader, body []byte, v Version) error {
	p.Dup = h.Flags&0x08 != 0
	p.QoS = QoS(h.Flags >> 1 & 0x03)
	p.Retain = h.Flags&0x01 != 0
	p.Topic, p.PacketID, p.Payload = nil, 0, nil
	p.Properties.Reset()
	if p.QoS > QoS2 {
		return malformed(PUBLISH, stmt(v, "MQTT-3.3.1-4", "MQTT-3.3.1-4"), "QoS 3")
	}
	if p.QoS == QoS0 && p.Dup {
		return malformed(PUBLISH, stmt(v, "MQTT-3.3.1-2", "MQTT-3.3.1-2"), "DUP set on a QoS 0 message")
	}
	c := cursor{b: body, t: PUBLISH}
	var err error
	if p.Topic, err = c.readString("topic name"); err != nil {
		return err
	}
	if p.QoS > QoS0 {
		if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
			return err
		}
		if p.PacketID == 0 {
			return protocolErr(PUBLISH, stmt(v, "MQTT-2.2.1-3", "MQTT-2.3.1-1"), "packet identifier 0")
		}
	}
	if v == V5 {
		if err := p.Properties.decode(&c, PUBLISH); err != nil {
			return err
		}
	}
	p.Payload = c.b[c.off:]
	return nil
}

func (p *Publish) bodySize(v Version) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > QoS0 {
		n += 2
	}
	if v == V5 {
		n += p.Properties.size()
	}
	return n
}

// Size implements Packet.
func (p *Publish) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	if p.QoS > QoS2 {
		return dst, encodeErr(PUBLISH, "QoS %d", p.QoS)
	}
	if len(p.Topic) > 65535 {
		return dst, encodeErr(PUBLISH, "topic longer than 65535 bytes")
	}
	if v == V5 && !p.Properties.Empty() {
		if err := p.Properties.check(PUBLISH); err != nil {
			return dst, err
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(PUBLISH, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	flags := byte(p.QoS) << 1
	if p.Dup {
		flags |= 0x08
	}
	if p.Retain {
		flags |= 0x01
	}
	dst = appendHeader(dst, PUBLISH, flags, b)
	dst = appendBinary(dst, p.Topic)
	if p.QoS > QoS0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	return append(dst, p.Payload...), nil
}
