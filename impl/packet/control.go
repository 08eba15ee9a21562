package packet

// Pingreq is the PINGREQ packet.
type Pingreq struct{}

// Pingresp is the PINGRESP packet.
type Pingresp struct{}

// Type implements Packet.
func (*Pingreq) Type() Type { return PINGREQ }

// Type implements Packet.
func (*Pingresp) Type() Type { return PINGRESP }

func decodeEmpty(h FixedHeader, body []byte) error {
	if err := checkFlags(h); err != nil {
		return err
	}
	if len(body) != 0 {
		return malformed(h.Type, "", "remaining length %d, want 0", len(body))
	}
	return nil
}

// Decode implements Packet.
func (*Pingreq) Decode(h FixedHeader, body []byte, _ Version) error { return decodeEmpty(h, body) }

// Decode implements Packet.
func (*Pingresp) Decode(h FixedHeader, body []byte, _ Version) error { return decodeEmpty(h, body) }

// Size implements Packet.
func (*Pingreq) Size(Version) int { return 2 }

// Size implements Packet.
func (*Pingresp) Size(Version) int { return 2 }

// Append implements Packet.
func (*Pingreq) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(PINGREQ)<<4, 0), nil
}

// Append implements Packet.
func (*Pingresp) Append(dst []byte, _ Version) ([]byte, error) {
	return append(dst, byte(PINGRESP)<<4, 0), nil
}

// Disconnect is the DISCONNECT packet. 3.1.1 carries no fields.
type Disconnect struct {
	ReasonCode ReasonCode // 5.0 only
	Properties Properties // 5.0 only
}

// Type implements Packet.
func (*Disconnect) Type() Type { return DISCONNECT }

// Decode implements Packet.
func (p *Disconnect) Decode(h FixedHeader, body []byte, v Version) error {
	return decodeReasoned(h, body, v, &p.ReasonCode, &p.Properties)
}

// Size implements Packet.
func (p *Disconnect) Size(v Version) int { return reasonedSize(v, p.ReasonCode, &p.Properties) }

// Append implements Packet.
func (p *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	return appendReasoned(dst, DISCONNECT, v, p.ReasonCode, &p.Properties)
}

// Auth is the AUTH packet (5.0 only).
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Auth) Type() Type { return AUTH }

// Decode implements Packet.
func (p *Auth) Decode(h FixedHeader, body []byte, v Version) error {
	if v != V5 {
		return malformed(AUTH, "", "AUTH is reserved before MQTT 5.0")
	}
	if err := decodeReasoned(h, body, v, &p.ReasonCode, &p.Properties); err != nil {
		return err
	}
	if len(body) > 0 && !p.Properties.Has(PropAuthMethod) {
		return protocolErr(AUTH, "", "AUTH without Authentication Method")
	}
	return nil
}

// Size implements Packet.
func (p *Auth) Size(v Version) int { return reasonedSize(v, p.ReasonCode, &p.Properties) }

// Append implements Packet.
func (p *Auth) Append(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return dst, encodeErr(AUTH, "AUTH exists only in MQTT 5.0")
	}
	return appendReasoned(dst, AUTH, v, p.ReasonCode, &p.Properties)
}

// decodeReasoned decodes the body shared by DISCONNECT and AUTH: an
// optional reason code and optional properties.
func decodeReasoned(h FixedHeader, body []byte, v Version, rc *ReasonCode, props *Properties) error {
	*rc = Success
	props.Reset()
	if err := checkFlags(h); err != nil {
		return err
	}
	if v != V5 {
		if len(body) != 0 {
			return malformed(h.Type, "", "remaining length %d, want 0", len(body))
		}
		return nil
	}
	if len(body) == 0 {
		return nil
	}
	c := cursor{b: body, t: h.Type}
	b, _ := c.readByte("reason code")
	*rc = ReasonCode(b)
	if !rc.ValidFor(h.Type) {
		return protocolErr(h.Type, "", "reason code 0x%x not valid", b)
	}
	if c.remaining() > 0 {
		if err := props.decode(&c, h.Type); err != nil {
			return err
		}
	}
	if c.remaining() != 0 {
		return malformed(h.Type, "", "%d extra bytes", c.remaining())
	}
	return nil
}

func reasonedBodySize(v Version, rc ReasonCode, props *Properties) int {
	if v != V5 {
		return 0
	}
	if props.Empty() {
		if rc == Success {
			return 0
		}
		return 1
	}
	return 1 + props.size()
}

func reasonedSize(v Version, rc ReasonCode, props *Properties) int {
	b := reasonedBodySize(v, rc, props)
	return 1 + varintSize(uint32(b)) + b
}

func appendReasoned(dst []byte, t Type, v Version, rc ReasonCode, props *Properties) ([]byte, error) {
	if v == V5 && !props.Empty() {
		if err := props.check(t); err != nil {
			return dst, err
		}
	}
	b := reasonedBodySize(v, rc, props)
	if b > MaxRemaining {
		return dst, encodeErr(t, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, t, 0, b)
	if b > 0 {
		dst = append(dst, byte(rc))
		if b > 1 {
			dst = props.append(dst)
		}
	}
	return dst, nil
}
