package packet

// Ack is a PUBACK, PUBREC, PUBREL or PUBCOMP packet; PacketType says which.
type Ack struct {
	PacketType Type
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only
	Properties Properties // 5.0 only
}

// Type implements Packet.
func (p *Ack) Type() Type { return p.PacketType }

// Decode implements Packet.
func (p *Ack) Decode(h FixedHeader, body []byte, v Version) error {
	p.PacketType = h.Type
	if err := checkFlags(h); err != nil {
		return err
	}
	p.ReasonCode = Success
	p.Properties.Reset()
	c := cursor{b: body, t: h.Type}
	var err error
	if p.PacketID, err = c.readUint16("packet identifier"); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return protocolErr(h.Type, "", "packet identifier 0")
	}
	if v == V5 && c.remaining() > 0 {
		rc, _ := c.readByte("reason code")
		p.ReasonCode = ReasonCode(rc)
		if !p.ReasonCode.ValidFor(h.Type) {
			return protocolErr(h.Type, "", "reason code 0x%x not valid", rc)
		}
		if c.remaining() > 0 {
			if err := p.Properties.decode(&c, h.Type); err != nil {
				return err
			}
		}
	}
	if c.remaining() != 0 {
		return malformed(h.Type, "", "%d extra bytes", c.remaining())
	}
	return nil
}

func (p *Ack) bodySize(v Version) int {
	if v != V5 {
		return 2
	}
	if p.Properties.Empty() {
		if p.ReasonCode == Success {
			return 2 // the short form: success and no properties
		}
		return 3
	}
	return 3 + p.Properties.size()
}

// Size implements Packet.
func (p *Ack) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Ack) Append(dst []byte, v Version) ([]byte, error) {
	if p.PacketType < PUBACK || p.PacketType > PUBCOMP {
		return dst, encodeErr(p.PacketType, "not an acknowledgement type")
	}
	if v == V5 && !p.Properties.Empty() {
		if err := p.Properties.check(p.PacketType); err != nil {
			return dst, err
		}
	}
	b := p.bodySize(v)
	dst = grow(dst, 2+b)
	flags, _ := p.PacketType.requiredFlags()
	dst = appendHeader(dst, p.PacketType, flags, b)
	dst = appendUint16(dst, p.PacketID)
	if b > 2 {
		dst = append(dst, byte(p.ReasonCode))
		if b > 3 {
			dst = p.Properties.append(dst)
		}
	}
	return dst, nil
}
