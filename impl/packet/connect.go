package packet

// Connect is the CONNECT packet.
type Connect struct {
	// Version is the protocol level; it selects the protocol name
	// ("MQIsdp" for V31, "MQTT" otherwise).
	Version    Version
	CleanStart bool // Clean Session in 3.1/3.1.1
	KeepAlive  uint16
	Properties Properties // 5.0 only
	ClientID   []byte

	WillFlag       bool
	WillQoS        QoS
	WillRetain     bool
	WillProperties Properties // 5.0 only
	WillTopic      []byte
	WillPayload    []byte

	UsernameFlag bool
	Username     []byte
	PasswordFlag bool
	Password     []byte
}

// Type implements Packet.
func (*Connect) Type() Type { return CONNECT }

var (
	nameMQTT   = []byte("MQTT")
	nameMQIsdp = []byte("MQIsdp")
)

// stmt picks the statement ID of the version being decoded.
func stmt(v Version, id5, id311 string) string {
	if v == V5 {
		return id5
	}
	return id311
}

// Decode implements Packet. The version argument is ignored: CONNECT
// announces its own.
func (p *Connect) Decode(h FixedHeader, body []byte, _ Version) error {
	if err := checkFlags(h); err != nil {
		return err
	}
	props, willProps := p.Properties, p.WillProperties
	*p = Connect{}
	c := cursor{b: body, t: CONNECT}
	name, err := c.readBinary("protocol name")
	if err != nil {
		return err
	}
	level, err := c.readByte("protocol level")
	if err != nil {
		return err
	}
	v := Version(level)
	switch {
	case string(name) == "MQTT" && (v == V311 || v == V5):
	case string(name) == "MQIsdp" && v == V31:
	case string(name) != "MQTT" && string(name) != "MQIsdp":
		return &Error{Code: UnsupportedProtocolVersion, Packet: CONNECT, Statement: "MQTT-3.1.2-1",
			Reason: "unknown protocol name " + quote(name)}
	default:
		return &Error{Code: UnsupportedProtocolVersion, Packet: CONNECT, Version: v,
			Statement: "MQTT-3.1.2-2", Reason: "unsupported protocol level " + itoa(int(level))}
	}
	p.Version = v
	fail := func(err error) error {
		if e, ok := err.(*Error); ok {
			e.Version = v
		}
		return err
	}

	flags, err := c.readByte("connect flags")
	if err != nil {
		return fail(err)
	}
	if flags&0x01 != 0 {
		return fail(malformed(CONNECT, "MQTT-3.1.2-3", "reserved connect flag is set"))
	}
	p.CleanStart = flags&0x02 != 0
	p.WillFlag = flags&0x04 != 0
	p.WillQoS = QoS(flags >> 3 & 0x03)
	p.WillRetain = flags&0x20 != 0
	p.PasswordFlag = flags&0x40 != 0
	p.UsernameFlag = flags&0x80 != 0
	if !p.WillFlag && p.WillQoS != 0 {
		return fail(malformed(CONNECT, stmt(v, "MQTT-3.1.2-11", "MQTT-3.1.2-13"), "will QoS set without will flag"))
	}
	if !p.WillFlag && p.WillRetain {
		return fail(malformed(CONNECT, stmt(v, "MQTT-3.1.2-13", "MQTT-3.1.2-15"), "will retain set without will flag"))
	}
	if p.WillQoS > QoS2 {
		return fail(malformed(CONNECT, stmt(v, "MQTT-3.1.2-12", "MQTT-3.1.2-14"), "will QoS is 3"))
	}
	if v != V5 && p.PasswordFlag && !p.UsernameFlag {
		return fail(malformed(CONNECT, "MQTT-3.1.2-22", "password flag set without user name flag"))
	}
	if p.KeepAlive, err = c.readUint16("keep alive"); err != nil {
		return fail(err)
	}
	p.Properties, p.WillProperties = props, willProps
	p.Properties.Reset()
	p.WillProperties.Reset()
	if v == V5 {
		if err := p.Properties.decode(&c, CONNECT); err != nil {
			return fail(err)
		}
		if p.Properties.Has(PropAuthData) && !p.Properties.Has(PropAuthMethod) {
			return fail(protocolErr(CONNECT, "", "Authentication Data without Authentication Method"))
		}
	}
	if p.ClientID, err = c.readString("client identifier"); err != nil {
		return fail(err)
	}
	if p.WillFlag {
		if v == V5 {
			if err := p.WillProperties.decode(&c, willContext); err != nil {
				return fail(err)
			}
		}
		if p.WillTopic, err = c.readString("will topic"); err != nil {
			return fail(err)
		}
		if p.WillPayload, err = c.readBinary("will payload"); err != nil {
			return fail(err)
		}
	}
	if p.UsernameFlag {
		if p.Username, err = c.readString("user name"); err != nil {
			return fail(err)
		}
	}
	if p.PasswordFlag {
		if p.Password, err = c.readBinary("password"); err != nil {
			return fail(err)
		}
	}
	if c.remaining() != 0 {
		return fail(malformed(CONNECT, "", "%d bytes after the payload", c.remaining()))
	}
	return nil
}

func (p *Connect) protocolName() []byte {
	if p.Version == V31 {
		return nameMQIsdp
	}
	return nameMQTT
}

func (p *Connect) bodySize(v Version) int {
	n := 2 + len(p.protocolName()) + 1 + 1 + 2
	if v == V5 {
		n += p.Properties.size()
	}
	n += 2 + len(p.ClientID)
	if p.WillFlag {
		if v == V5 {
			n += p.WillProperties.size()
		}
		n += 2 + len(p.WillTopic) + 2 + len(p.WillPayload)
	}
	if p.UsernameFlag {
		n += 2 + len(p.Username)
	}
	if p.PasswordFlag {
		n += 2 + len(p.Password)
	}
	return n
}

// Size implements Packet. The version argument is ignored in favour of p.Version.
func (p *Connect) Size(Version) int {
	b := p.bodySize(p.Version)
	return 1 + varintSize(uint32(b)) + b
}

// Append implements Packet. The version argument is ignored in favour of p.Version.
func (p *Connect) Append(dst []byte, _ Version) ([]byte, error) {
	v := p.Version
	if !v.Valid() {
		return dst, encodeErr(CONNECT, "protocol level %d", v)
	}
	if p.WillQoS > QoS2 {
		return dst, encodeErr(CONNECT, "will QoS %d", p.WillQoS)
	}
	for _, s := range [][]byte{p.ClientID, p.WillTopic, p.WillPayload, p.Username, p.Password} {
		if len(s) > 65535 {
			return dst, encodeErr(CONNECT, "field longer than 65535 bytes")
		}
	}
	if v == V5 {
		if err := p.Properties.check(CONNECT); err != nil {
			return dst, err
		}
		if p.WillFlag {
			if err := p.WillProperties.check(willContext); err != nil {
				return dst, err
			}
		}
	}
	b := p.bodySize(v)
	if b > MaxRemaining {
		return dst, encodeErr(CONNECT, "body of %d bytes", b)
	}
	dst = grow(dst, 1+varintSize(uint32(b))+b)
	dst = appendHeader(dst, CONNECT, 0, b)
	dst = appendBinary(dst, p.protocolName())
	dst = append(dst, byte(v))
	var flags byte
	if p.CleanStart {
		flags |= 0x02
	}
	if p.WillFlag {
		flags |= 0x04 | byte(p.WillQoS)<<3
		if p.WillRetain {
			flags |= 0x20
		}
	}
	if p.PasswordFlag {
		flags |= 0x40
	}
	if p.UsernameFlag {
		flags |= 0x80
	}
	dst = append(dst, flags)
	dst = appendUint16(dst, p.KeepAlive)
	if v == V5 {
		dst = p.Properties.append(dst)
	}
	dst = appendBinary(dst, p.ClientID)
	if p.WillFlag {
		if v == V5 {
			dst = p.WillProperties.append(dst)
		}
		dst = appendBinary(dst, p.WillTopic)
		dst = appendBinary(dst, p.WillPayload)
	}
	if p.UsernameFlag {
		dst = appendBinary(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBinary(dst, p.Password)
	}
	return dst, nil
}
