package packet

// Connack is the CONNACK packet. In 3.1/3.1.1 ReasonCode carries the
// connect return code (ConnAccepted, ConnRefused...).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties // 5.0 only
}

// Type implements Packet.
func (*Connack) Type() Type { return CONNACK }

// Decode implements Packet.
func (p *Connack) Decode(h FixedHeader, body []byte, v Version) error {
	if err := checkFlags(h); err != nil {
		return err
	}
	props := p.Properties
	*p = Connack{Properties: props}
	p.Properties.Reset()
	c := cursor{b: body, t: CONNACK}
	flags, err := c.readByte("acknowledge flags")
	if err != nil {
		return err
	}
	if flags&0xfe != 0 {
		return malformed(CONNACK, "", "reserved acknowledge flags set")
	}
	p.SessionPresent = flags&0x01 != 0
	rc, err := c.readByte("reason code")
	if err != nil {
		return err
	}
	p.ReasonCode = ReasonCode(rc)
	if v == V5 {
		if !p.ReasonCode.ValidFor(CONNACK) {
			return protocolErr(CONNACK, "", "reason code 0x%x not valid in CONNACK", rc)
		}
		if err := p.Properties.decode(&c, CONNACK); err != nil {
			return err
		}
	} else if rc > 5 {
		return protocolErr(CONNACK, "", "return code 0x%x", rc)
	}
	if p.SessionPresent && p.ReasonCode != 0 {
		return protocolErr(CONNACK, stmt(v, "MQTT-3.2.2-6", "MQTT-3.2.2-4"), "session present with a refusal")
	}
	if c.remaining() != 0 {
		return malformed(CONNACK, "", "%d extra bytes", c.remaining())
	}
	return nil
}

func (p *Connack) bodySize(v Version) int {
	if v == V5 {
		return 2 + p.Properties.size()
	}
	return 2
}

// Size implements Packet.
func (p *Connack) Size(v Version) int {
	b := p.bodySize(v)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet.
func (p *Connack) Append(dst []byte, v Version) ([]byte, error) {
	if v == V5 {
		if err := p.Properties.check(CONNACK); err != nil {
			return dst, err
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(CONNACK, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, CONNACK, 0, b)
	var flags byte
	if p.SessionPresent {
		flags = 1
	}
	dst = append(dst, flags, byte(p.ReasonCode))
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	return dst, nil
}
