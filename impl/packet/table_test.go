package packet

import (
	"errors"
	"io"
	"testing"
)

// codecCase is one packet on the wire, byte by byte, and what decoding it
// for version v must give: the packet (want) or a refusal with a reason code.
type codecCase struct {
	name string
	v    Version
	in   []byte
	want Packet     // nil when decoding must fail
	code ReasonCode // expected Error.Code when want is nil
	// noncanonical marks valid input that re-encodes differently (e.g. a
	// reason code sent where the short form would do).
	noncanonical bool
	cite         string // statements the case checks
}

var connectCases = []codecCase{
	{name: "3.1.1 minimal", v: V311, cite: "[v3.1.1 MQTT-3.1.3-3] [v3.1.1 MQTT-3.1.3-4]",
		in: pk("10",
			"00 04 'MQTT'", // protocol name
			"04",           // level 4
			"02",           // flags: clean session
			"00 3c",        // keep alive 60
			"00 01 'a'",    // client identifier
		),
		want: &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: bs("a")}},
	{name: "3.1 MQIsdp", v: V31,
		in: pk("10",
			"00 06 'MQIsdp'", // protocol name of 3.1
			"03",             // level 3
			"00",             // flags: persistent session
			"00 0a",          // keep alive 10
			"00 03 'abc'",
		),
		want: &Connect{Version: V31, KeepAlive: 10, ClientID: bs("abc")}},
	{name: "5.0 minimal", v: V5, cite: "[v5 MQTT-2.2.2-1]",
		in: pk("10",
			"00 04 'MQTT' 05", // name, level 5
			"02 00 00",        // clean start, keep alive 0
			"00",              // property length 0
			"00 02 'id'",
		),
		want: &Connect{Version: V5, CleanStart: true, ClientID: bs("id")}},
	{name: "5.0 every CONNECT property", v: V5,
		in: pk("10",
			"00 04 'MQTT' 05 00 00 1e",
			pl(
				"11 00 00 0e 10",         // session expiry 3600
				"21 00 14",               // receive maximum 20
				"27 00 01 00 00",         // maximum packet size 65536
				"22 00 0a",               // topic alias maximum 10
				"19 01",                  // request response information
				"17 00",                  // request problem information 0
				"15 00 05 'SCRAM'",       // authentication method
				"16 00 02 ab cd",         // authentication data
				"26 00 01 'k' 00 01 'v'", // user property
			),
			"00 01 'c'",
		),
		want: &Connect{Version: V5, KeepAlive: 30, ClientID: bs("c"), Properties: present(Properties{
			SessionExpiry: 3600, ReceiveMaximum: 20, MaximumPacketSize: 65536, TopicAliasMaximum: 10,
			RequestResponseInfo: 1, RequestProblemInfo: 0, AuthMethod: bs("SCRAM"), AuthData: []byte{0xab, 0xcd},
			User: []UserProperty{{bs("k"), bs("v")}},
		}, PropSessionExpiry, PropReceiveMaximum, PropMaximumPacketSize, PropTopicAliasMaximum,
			PropRequestResponseInfo, PropRequestProblemInfo, PropAuthMethod, PropAuthData)},
		noncanonical: true, // properties are re-encoded in identifier order
	},
	{name: "3.1.1 will, user name and password", v: V311,
		cite: "[v3.1.1 MQTT-3.1.2-9] [v3.1.1 MQTT-3.1.2-19] [v3.1.1 MQTT-3.1.2-21] [v3.1.1 MQTT-3.1.3-1]",
		in: pk("10",
			"00 04 'MQTT' 04",
			"ee",           // user, password, will retain, will QoS 1, will, clean
			"00 3c",        // keep alive 60
			"00 02 'c1'",   // client id
			"00 03 'w/t'",  // will topic
			"00 03 'bye'",  // will payload
			"00 04 'user'", // user name
			"00 02 00 ff",  // password (binary)
		),
		want: &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: bs("c1"),
			WillFlag: true, WillQoS: QoS1, WillRetain: true, WillTopic: bs("w/t"), WillPayload: bs("bye"),
			UsernameFlag: true, Username: bs("user"), PasswordFlag: true, Password: []byte{0, 0xff}}},
	{name: "5.0 will properties", v: V5, cite: "[v5 MQTT-3.1.2-9] [v5 MQTT-3.1.3-11]",
		in: pk("10",
			"00 04 'MQTT' 05",
			"14",    // will QoS 2, will flag
			"00 00", // keep alive
			"00",    // properties
			"00 00", // empty client id
			pl( // will properties
				"01 01",          // payload format: UTF-8
				"02 00 00 00 3c", // message expiry 60
				"03 00 01 't'",   // content type
				"08 00 01 'r'",   // response topic
				"09 00 01 07",    // correlation data
				"18 00 00 00 05", // will delay 5
			),
			"00 01 'w'", // will topic
			"00 00",     // empty will payload
		),
		want: &Connect{Version: V5, WillFlag: true, WillQoS: QoS2, WillTopic: bs("w"),
			WillProperties: present(Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: bs("t"),
				ResponseTopic: bs("r"), CorrelationData: []byte{7}, WillDelay: 5},
				PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData, PropWillDelay)}},
	{name: "3.1.1 zero-length client id", v: V311,
		in:   pk("10", "00 04 'MQTT' 04 02 00 00", "00 00"),
		want: &Connect{Version: V311, CleanStart: true}},
	{name: "5.0 password without user name", v: V5,
		in:   pk("10", "00 04 'MQTT' 05 42 00 00 00", "00 01 'x'", "00 03 'pwd'"),
		want: &Connect{Version: V5, CleanStart: true, ClientID: bs("x"), PasswordFlag: true, Password: bs("pwd")}},
	{name: "BOM kept in client id", v: V5, cite: "[v5 MQTT-1.5.4-3] [v3.1.1 MQTT-1.5.3-3]",
		in:   pk("10", "00 04 'MQTT' 05 02 00 00 00", "00 04 ef bb bf 'a'"),
		want: &Connect{Version: V5, CleanStart: true, ClientID: []byte{0xef, 0xbb, 0xbf, 'a'}}},
	{name: "multi-byte UTF-8 user name", v: V311, cite: "[v3.1.1 MQTT-3.1.3-11]",
		in:   pk("10", "00 04 'MQTT' 04 82 00 00", "00 01 'x'", "00 04 e6 97 a5 'a'"),
		want: &Connect{Version: V311, CleanStart: true, ClientID: bs("x"), UsernameFlag: true, Username: []byte{0xe6, 0x97, 0xa5, 'a'}}},

	{name: "unknown protocol name", v: V311, code: UnsupportedProtocolVersion, cite: "[v5 MQTT-3.1.2-1] [v3.1.1 MQTT-3.1.2-1]",
		in: pk("10", "00 04 'MQTX' 04 02 00 00", "00 01 'a'")},
	{name: "MQTT with level 3", v: V311, code: UnsupportedProtocolVersion, cite: "[v3.1.1 MQTT-3.1.2-2]",
		in: pk("10", "00 04 'MQTT' 03 02 00 00", "00 01 'a'")},
	{name: "MQIsdp with level 4", v: V311, code: UnsupportedProtocolVersion,
		in: pk("10", "00 06 'MQIsdp' 04 02 00 00", "00 01 'a'")},
	{name: "level 6", v: V5, code: UnsupportedProtocolVersion, cite: "[v5 MQTT-3.1.2-2]",
		in: pk("10", "00 04 'MQTT' 06 02 00 00 00", "00 01 'a'")},
	{name: "reserved flag set 3.1.1", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.2-3]",
		in: pk("10", "00 04 'MQTT' 04 03 00 00", "00 01 'a'")},
	{name: "reserved flag set 5.0", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.1.2-3]",
		in: pk("10", "00 04 'MQTT' 05 03 00 00 00", "00 01 'a'")},
	{name: "will QoS without will flag", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.1.2-11] [v3.1.1 MQTT-3.1.2-13] [v3.1.1 MQTT-3.1.2-11]",
		in: pk("10", "00 04 'MQTT' 05 0a 00 00 00", "00 01 'a'")},
	{name: "will retain without will flag", v: V311, code: MalformedPacket, cite: "[v5 MQTT-3.1.2-13] [v3.1.1 MQTT-3.1.2-15]",
		in: pk("10", "00 04 'MQTT' 04 22 00 00", "00 01 'a'")},
	{name: "will QoS 3", v: V311, code: MalformedPacket, cite: "[v5 MQTT-3.1.2-12] [v3.1.1 MQTT-3.1.2-14]",
		in: pk("10", "00 04 'MQTT' 04 1e 00 00", "00 01 'a'", "00 01 't' 00 00")},
	{name: "3.1.1 password without user name", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.2-22]",
		in: pk("10", "00 04 'MQTT' 04 42 00 00", "00 01 'a'", "00 01 'p'")},
	{name: "flags in fixed header", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-2.2.2-1] [v3.1.1 MQTT-2.2.2-2] [v5 MQTT-2.1.3-1]",
		in: pk("11", "00 04 'MQTT' 04 02 00 00", "00 01 'a'")},
	{name: "U+0000 in client id", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-1.5.3-2] [v5 MQTT-1.5.4-2]",
		in: pk("10", "00 04 'MQTT' 04 02 00 00", "00 02 'a' 00")},
	{name: "ill-formed UTF-8 in client id", v: V5, code: MalformedPacket, cite: "[v5 MQTT-1.5.4-1] [v5 MQTT-3.1.3-4] [v3.1.1 MQTT-1.5.3-1] [v3.1.1 MQTT-3.1.3-4]",
		in: pk("10", "00 04 'MQTT' 05 02 00 00 00", "00 02 c3 28")},
	{name: "surrogate in client id", v: V5, code: MalformedPacket, cite: "[v5 MQTT-1.5.4-1] [v3.1.1 MQTT-1.5.3-1]",
		in: pk("10", "00 04 'MQTT' 05 02 00 00 00", "00 03 ed a0 80")},
	{name: "overlong UTF-8 in user name", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.3-11]",
		in: pk("10", "00 04 'MQTT' 04 82 00 00", "00 01 'a'", "00 02 c0 af")},
	{name: "ill-formed UTF-8 in will topic", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.3-10] [v5 MQTT-3.1.3-11]",
		in: pk("10", "00 04 'MQTT' 04 06 00 00", "00 01 'a'", "00 01 ff 00 00")},
	{name: "client id cut short", v: V311, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 04 02 00 00", "00 05 'ab'")},
	{name: "bytes after the payload", v: V311, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 04 02 00 00", "00 01 'a' 00")},
	{name: "user name flag without user name", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.2-19] [v5 MQTT-3.1.2-17]",
		in: pk("10", "00 04 'MQTT' 04 82 00 00", "00 01 'a'")},
	{name: "password flag without password", v: V5, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.2-21] [v5 MQTT-3.1.2-19]",
		in: pk("10", "00 04 'MQTT' 05 c2 00 00 00", "00 01 'a'", "00 01 'u'")},
	{name: "will flag without will topic", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.1.2-9] [v5 MQTT-3.1.2-9]",
		in: pk("10", "00 04 'MQTT' 04 06 00 00", "00 01 'a'")},
	{name: "property not allowed in CONNECT", v: V5, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "03 23 00 01", "00 01 'a'")},
	{name: "unknown property", v: V5, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "02 7f 00", "00 01 'a'")},
	{name: "duplicate session expiry", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "0a 11 00 00 00 01 11 00 00 00 02", "00 01 'a'")},
	{name: "receive maximum 0", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "03 21 00 00", "00 01 'a'")},
	{name: "maximum packet size 0", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "05 27 00 00 00 00", "00 01 'a'")},
	{name: "request problem information 2", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "02 17 02", "00 01 'a'")},
	{name: "request response information 2", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "02 19 02", "00 01 'a'")},
	{name: "authentication data without method", v: V5, code: ProtocolError,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "04 16 00 01 aa", "00 01 'a'")},
	{name: "property length past the packet", v: V5, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "40 11 00 00 00 01")},
	{name: "session expiry in will properties", v: V5, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 05 06 00 00 00", "00 01 'a'", "05 11 00 00 00 01", "00 01 't' 00 00")},
	{name: "user property with ill-formed UTF-8", v: V5, code: MalformedPacket, cite: "[v5 MQTT-1.5.7-1]",
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "07 26 00 01 'k' 00 01 fe", "00 01 'a'")},
	{name: "property identifier not minimally encoded", v: V5, code: MalformedPacket, cite: "[v5 MQTT-1.5.5-1]",
		in: pk("10", "00 04 'MQTT' 05 02 00 00", "06 91 00 00 00 00 01", "00 01 'a'")},
	{name: "keep alive cut short", v: V311, code: MalformedPacket,
		in: pk("10", "00 04 'MQTT' 04 02 00")},
}

var connackCases = []codecCase{
	{name: "3.1.1 accepted", v: V311, in: pk("20", "00 00"), want: &Connack{}},
	{name: "3.1.1 session present", v: V311, cite: "[v3.1.1 MQTT-3.2.2-2]",
		in: pk("20", "01 00"), want: &Connack{SessionPresent: true}},
	{name: "3.1.1 not authorized", v: V311, in: pk("20", "00 05"), want: &Connack{ReasonCode: ConnRefusedNotAuthorized}},
	{name: "3.1 identifier rejected", v: V31, in: pk("20", "00 02"), want: &Connack{ReasonCode: ConnRefusedIdentifier}},
	{name: "5.0 success, no properties", v: V5, in: pk("20", "00 00 00"), want: &Connack{}},
	{name: "5.0 every CONNACK property", v: V5,
		in: pk("20", "01 00",
			pl(
				"11 00 00 00 78", // session expiry 120
				"12 00 02 'id'",  // assigned client id
				"13 00 1e",       // server keep alive 30
				"15 00 01 'm'",   // authentication method
				"16 00 01 01",    // authentication data
				"1a 00 01 'r'",   // response information
				"1c 00 01 's'",   // server reference
				"1f 00 02 'ok'",  // reason string
				"21 00 64",       // receive maximum 100
				"22 00 05",       // topic alias maximum 5
				"24 01",          // maximum QoS 1
				"25 00",          // retain not available
				"27 00 00 10 00", // maximum packet size 4096
				"28 00",          // wildcard subscriptions not available
				"29 01",          // subscription identifiers available
				"2a 00",          // shared subscriptions not available
				"26 00 01 'a' 00 01 'b'",
			),
		),
		want: &Connack{SessionPresent: true, Properties: present(Properties{
			SessionExpiry: 120, AssignedClientID: bs("id"), ServerKeepAlive: 30, AuthMethod: bs("m"),
			AuthData: []byte{1}, ResponseInfo: bs("r"), ServerReference: bs("s"), ReasonString: bs("ok"),
			ReceiveMaximum: 100, TopicAliasMaximum: 5, MaximumQoS: 1, RetainAvailable: 0,
			MaximumPacketSize: 4096, WildcardSubAvail: 0, SubIDAvail: 1, SharedSubAvail: 0,
			User: []UserProperty{{bs("a"), bs("b")}},
		}, PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod, PropAuthData,
			PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum,
			PropMaximumQoS, PropRetainAvailable, PropMaximumPacketSize, PropWildcardSubAvailable,
			PropSubIDAvailable, PropSharedSubAvailable)}},
	{name: "5.0 refused, not authorized", v: V5, in: pk("20", "00 87 00"), want: &Connack{ReasonCode: NotAuthorized}},

	{name: "reserved acknowledge flags", v: V311, code: MalformedPacket, cite: "[v5 MQTT-3.2.2-1]",
		in: pk("20", "02 00")},
	{name: "3.1.1 return code 6", v: V311, code: ProtocolError, in: pk("20", "00 06")},
	{name: "5.0 reason code not for CONNACK", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.2.2-8]",
		in: pk("20", "00 04 00")},
	{name: "session present with refusal", v: V311, code: ProtocolError, cite: "[v3.1.1 MQTT-3.2.2-4] [v5 MQTT-3.2.2-6]",
		in: pk("20", "01 05")},
	{name: "topic alias in CONNACK", v: V5, code: MalformedPacket, in: pk("20", "00 00 03 23 00 01")},
	{name: "3.1.1 CONNACK too long", v: V311, code: MalformedPacket, in: pk("20", "00 00 00")},
	{name: "CONNACK too short", v: V311, code: MalformedPacket, in: pk("20", "00")},
	{name: "CONNACK flags in fixed header", v: V5, code: MalformedPacket, in: pk("21", "00 00 00")},
}

var publishCases = []codecCase{
	{name: "3.1.1 QoS 0", v: V311, cite: "[v3.1.1 MQTT-2.3.1-5] [v3.1.1 MQTT-3.3.2-1]",
		in:   pk("30", "00 03 'a/b'", "'hi'"),
		want: &Publish{Topic: bs("a/b"), Payload: bs("hi")}},
	{name: "3.1.1 QoS 1", v: V311, cite: "[v3.1.1 MQTT-2.3.1-1]",
		in:   pk("32", "00 01 't'", "00 07", "01 02"),
		want: &Publish{QoS: QoS1, Topic: bs("t"), PacketID: 7, Payload: []byte{1, 2}}},
	{name: "3.1 QoS 2 dup retain", v: V31,
		in:   pk("3d", "00 01 't'", "ff ff"),
		want: &Publish{Dup: true, QoS: QoS2, Retain: true, Topic: bs("t"), PacketID: 0xffff}},
	{name: "3.1.1 retained empty payload", v: V311,
		in:   pk("31", "00 01 't'"),
		want: &Publish{Retain: true, Topic: bs("t")}},
	{name: "5.0 QoS 0 no properties", v: V5, cite: "[v5 MQTT-2.2.1-2] [v5 MQTT-2.2.2-1] [v5 MQTT-3.3.2-1]",
		in:   pk("30", "00 01 't'", "00", "'x'"),
		want: &Publish{Topic: bs("t"), Payload: bs("x")}},
	{name: "5.0 every PUBLISH property", v: V5,
		in: pk("32", "00 01 't' 00 01",
			pl(
				"01 01",          // payload format UTF-8
				"02 00 00 00 0a", // message expiry 10
				"03 00 04 'text'",
				"08 00 02 'rt'",
				"09 00 02 01 02",
				"23 00 03", // topic alias 3
				"0b 05",    // subscription identifier 5
				"0b 80 01", // subscription identifier 128
				"26 00 01 'k' 00 01 'v'",
			),
			"'pay'"),
		want: &Publish{QoS: QoS1, Topic: bs("t"), PacketID: 1, Payload: bs("pay"), Properties: present(Properties{
			PayloadFormat: 1, MessageExpiry: 10, ContentType: bs("text"), ResponseTopic: bs("rt"),
			CorrelationData: []byte{1, 2}, SubscriptionIDs: []uint32{5, 128}, TopicAlias: 3,
			User: []UserProperty{{bs("k"), bs("v")}},
		}, PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData, PropTopicAlias)}},
	{name: "5.0 user properties keep their order", v: V5, cite: "[v5 MQTT-3.1.3-10]",
		in: pk("30", "00 01 't'", pl(
			"26 00 01 'b' 00 01 '1'",
			"26 00 01 'a' 00 01 '2'",
			"26 00 01 'b' 00 01 '3'")),
		want: &Publish{Topic: bs("t"), Properties: Properties{User: []UserProperty{
			{bs("b"), bs("1")}, {bs("a"), bs("2")}, {bs("b"), bs("3")}}}}},
	{name: "5.0 empty topic with alias", v: V5,
		in:   pk("30", "00 00", "03 23 00 01", "'p'"),
		want: &Publish{Topic: bs(""), Payload: bs("p"), Properties: present(Properties{TopicAlias: 1}, PropTopicAlias)}},
	{name: "binary payload with NUL bytes", v: V311,
		in:   pk("30", "00 01 't'", "00 00 ff"),
		want: &Publish{Topic: bs("t"), Payload: []byte{0, 0, 0xff}}},

	{name: "QoS 3", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.3.1-4] [v5 MQTT-3.3.1-4]",
		in: pk("36", "00 01 't' 00 01")},
	{name: "DUP on QoS 0", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.3.1-2] [v3.1.1 MQTT-3.3.1-2]",
		in: pk("38", "00 01 't' 00")},
	{name: "QoS 1 with packet identifier 0", v: V311, code: ProtocolError, cite: "[v3.1.1 MQTT-2.3.1-1]",
		in: pk("32", "00 01 't' 00 00")},
	{name: "topic with ill-formed UTF-8", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.3.2-1] [v5 MQTT-3.3.2-1]",
		in: pk("30", "00 02 'a' 80")},
	{name: "topic with U+0000", v: V5, code: MalformedPacket, cite: "[v3.1.1 MQTT-4.7.3-2]",
		in: pk("30", "00 02 'a' 00", "00")},
	{name: "topic length past the packet", v: V311, code: MalformedPacket, in: pk("30", "00 09 'abc'")},
	{name: "QoS 1 without packet identifier", v: V311, code: MalformedPacket, in: pk("32", "00 01 't' 00")},
	{name: "topic alias 0", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.3.2-8]",
		in: pk("30", "00 01 't'", "03 23 00 00")},
	{name: "message expiry twice", v: V5, code: ProtocolError,
		in: pk("30", "00 01 't'", "0a 02 00 00 00 01 02 00 00 00 01")},
	{name: "payload format 2", v: V5, code: ProtocolError, in: pk("30", "00 01 't'", "02 01 02")},
	{name: "session expiry in PUBLISH", v: V5, code: MalformedPacket, in: pk("30", "00 01 't'", "05 11 00 00 00 01")},
	{name: "subscription identifier 0", v: V5, code: ProtocolError, in: pk("30", "00 01 't'", "02 0b 00")},
	{name: "correlation data cut short", v: V5, code: MalformedPacket, in: pk("30", "00 01 't'", "05 09 00 09 01 02")},
	{name: "content type ill-formed", v: V5, code: MalformedPacket, in: pk("30", "00 01 't'", "04 03 00 01 ff")},
	{name: "PUBLISH without topic", v: V311, code: MalformedPacket, in: pk("30")},
}

var ackCases = []codecCase{
	{name: "3.1.1 PUBACK", v: V311, in: pk("40", "00 05"), want: &Ack{PacketType: PUBACK, PacketID: 5}},
	{name: "3.1.1 PUBREC", v: V311, in: pk("50", "00 06"), want: &Ack{PacketType: PUBREC, PacketID: 6}},
	{name: "3.1.1 PUBREL", v: V311, cite: "[v3.1.1 MQTT-3.6.1-1]", in: pk("62", "00 07"), want: &Ack{PacketType: PUBREL, PacketID: 7}},
	{name: "3.1.1 PUBCOMP", v: V311, in: pk("70", "00 08"), want: &Ack{PacketType: PUBCOMP, PacketID: 8}},
	{name: "5.0 PUBACK short form", v: V5, in: pk("40", "00 01"), want: &Ack{PacketType: PUBACK, PacketID: 1}},
	{name: "5.0 PUBACK success spelled out", v: V5, in: pk("40", "00 01 00 00"), want: &Ack{PacketType: PUBACK, PacketID: 1}, noncanonical: true},
	{name: "5.0 PUBACK no matching subscribers", v: V5, cite: "[v5 MQTT-3.4.2-1]",
		in: pk("40", "00 02 10"), want: &Ack{PacketType: PUBACK, PacketID: 2, ReasonCode: NoMatchingSubscribers}},
	{name: "5.0 PUBREC with reason string and user property", v: V5,
		in: pk("50", "00 03 97", pl("1f 00 03 'max'", "26 00 01 'k' 00 01 'v'")),
		want: &Ack{PacketType: PUBREC, PacketID: 3, ReasonCode: QuotaExceeded, Properties: present(Properties{
			ReasonString: bs("max"), User: []UserProperty{{bs("k"), bs("v")}}}, PropReasonString)}},
	{name: "5.0 PUBREL identifier not found", v: V5, cite: "[v5 MQTT-3.6.2-1] [v5 MQTT-3.6.1-1]",
		in: pk("62", "00 04 92"), want: &Ack{PacketType: PUBREL, PacketID: 4, ReasonCode: PacketIdentifierNotFound}},
	{name: "5.0 PUBCOMP identifier not found", v: V5, cite: "[v5 MQTT-3.7.2-1]",
		in: pk("70", "00 04 92"), want: &Ack{PacketType: PUBCOMP, PacketID: 4, ReasonCode: PacketIdentifierNotFound}},

	{name: "PUBREL with flags 0", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.6.1-1] [v5 MQTT-3.6.1-1]",
		in: pk("60", "00 01")},
	{name: "PUBACK with flags 2", v: V5, code: MalformedPacket, cite: "[v5 MQTT-2.1.3-1]", in: pk("42", "00 01")},
	{name: "PUBCOMP with flags 1", v: V311, code: MalformedPacket, in: pk("71", "00 01")},
	{name: "3.1.1 PUBACK of 3 bytes", v: V311, code: MalformedPacket, in: pk("40", "00 01 00")},
	{name: "PUBACK of 1 byte", v: V5, code: MalformedPacket, in: pk("40", "00")},
	{name: "PUBACK packet identifier 0", v: V311, code: ProtocolError, in: pk("40", "00 00")},
	{name: "5.0 PUBACK with PUBREL reason code", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.4.2-1]", in: pk("40", "00 01 92")},
	{name: "5.0 PUBREL with PUBACK reason code", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.6.2-1]", in: pk("62", "00 01 10")},
	{name: "5.0 PUBACK with topic alias", v: V5, code: MalformedPacket, in: pk("40", "00 01 00 03 23 00 01")},
	{name: "5.0 PUBACK property length past the end", v: V5, code: MalformedPacket, in: pk("40", "00 01 00 05 1f 00")},
}

var subscribeCases = []codecCase{
	{name: "3.1.1 one filter", v: V311, cite: "[v3.1.1 MQTT-3.8.1-1] [v3.1.1 MQTT-3.8.3-1]",
		in:   pk("82", "00 0a", "00 03 'a/#' 01"),
		want: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: bs("a/#"), QoS: QoS1}}}},
	{name: "3.1.1 three filters", v: V311,
		in: pk("82", "00 01", "00 01 'a' 00", "00 03 '+/b' 02", "00 01 '#' 01"),
		want: &Subscribe{PacketID: 1, Subscriptions: []Subscription{
			{Filter: bs("a")}, {Filter: bs("+/b"), QoS: QoS2}, {Filter: bs("#"), QoS: QoS1}}}},
	{name: "5.0 subscription options", v: V5, cite: "[v5 MQTT-3.8.1-1] [v5 MQTT-3.8.3-1]",
		in: pk("82", "00 02", "00",
			"00 01 'x' 2e", // RH 2, RAP, NL, QoS 2
			"00 01 'y' 10", // RH 1, QoS 0
		),
		want: &Subscribe{PacketID: 2, Subscriptions: []Subscription{
			{Filter: bs("x"), QoS: QoS2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			{Filter: bs("y"), RetainHandling: 1}}}},
	{name: "5.0 subscription identifier and user property", v: V5,
		in: pk("82", "00 03", pl("0b ff ff 7f", "26 00 01 'k' 00 01 'v'"), "00 0e '$share/g/a/b/c' 01"),
		want: &Subscribe{PacketID: 3, Properties: Properties{SubscriptionIDs: []uint32{2097151},
			User: []UserProperty{{bs("k"), bs("v")}}},
			Subscriptions: []Subscription{{Filter: bs("$share/g/a/b/c"), QoS: QoS1}}}},

	{name: "SUBSCRIBE with flags 0", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.8.1-1] [v5 MQTT-3.8.1-1]",
		in: pk("80", "00 01", "00 01 'a' 00")},
	{name: "3.1.1 SUBSCRIBE without filters", v: V311, code: ProtocolError, cite: "[v3.1.1 MQTT-3.8.3-3]",
		in: pk("82", "00 01")},
	{name: "5.0 SUBSCRIBE without filters", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.8.3-2]",
		in: pk("82", "00 01", "00")},
	{name: "3.1.1 reserved option bits", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.8.3-4]",
		in: pk("82", "00 01", "00 01 'a' 04")},
	{name: "3.1.1 QoS 3", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.8.3-4]",
		in: pk("82", "00 01", "00 01 'a' 03")},
	{name: "5.0 reserved option bits", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.8.3-5]",
		in: pk("82", "00 01", "00", "00 01 'a' 40")},
	{name: "5.0 retain handling 3", v: V5, code: ProtocolError, in: pk("82", "00 01", "00", "00 01 'a' 30")},
	{name: "5.0 maximum QoS 3", v: V5, code: ProtocolError, in: pk("82", "00 01", "00", "00 01 'a' 03")},
	{name: "SUBSCRIBE packet identifier 0", v: V5, code: ProtocolError, in: pk("82", "00 00", "00", "00 01 'a' 00")},
	{name: "two subscription identifiers", v: V5, code: ProtocolError, in: pk("82", "00 01", "04 0b 01 0b 02", "00 01 'a' 00")},
	{name: "SUBSCRIBE subscription identifier 0", v: V5, code: ProtocolError, in: pk("82", "00 01", "02 0b 00", "00 01 'a' 00")},
	{name: "filter without options byte", v: V311, code: MalformedPacket, in: pk("82", "00 01", "00 01 'a'")},
	{name: "filter with ill-formed UTF-8", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.8.3-1] [v5 MQTT-3.8.3-1]",
		in: pk("82", "00 01", "00 01 ff 00")},
	{name: "reason string in SUBSCRIBE", v: V5, code: MalformedPacket, in: pk("82", "00 01", "04 1f 00 01 'r'", "00 01 'a' 00")},
}

var subackCases = []codecCase{
	{name: "3.1.1 SUBACK", v: V311, cite: "[v3.1.1 MQTT-3.9.3-2]",
		in: pk("90", "00 0a", "00 01 02 80"), want: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{0, 1, 2, SubackFailure}}},
	{name: "5.0 SUBACK", v: V5, cite: "[v5 MQTT-3.9.3-2]",
		in: pk("90", "00 0b", pl("1f 00 02 'no'"), "00 87 a2"),
		want: &Suback{PacketID: 11, Properties: present(Properties{ReasonString: bs("no")}, PropReasonString),
			ReasonCodes: []ReasonCode{GrantedQoS0, NotAuthorized, WildcardSubscriptionsNotSupported}}},
	{name: "3.1.1 SUBACK code 3", v: V311, code: ProtocolError, cite: "[v3.1.1 MQTT-3.9.3-2]", in: pk("90", "00 01 03")},
	{name: "5.0 SUBACK code not for SUBACK", v: V5, code: ProtocolError, in: pk("90", "00 01 00 8e")},
	{name: "SUBACK without codes", v: V311, code: ProtocolError, in: pk("90", "00 01")},
	{name: "SUBACK with flags", v: V311, code: MalformedPacket, in: pk("92", "00 01 00")},
}

var unsubscribeCases = []codecCase{
	{name: "3.1.1 two filters", v: V311, cite: "[v3.1.1 MQTT-3.10.1-1] [v3.1.1 MQTT-3.10.3-1]",
		in:   pk("a2", "00 09", "00 01 'a'", "00 03 'b/+'"),
		want: &Unsubscribe{PacketID: 9, Filters: [][]byte{bs("a"), bs("b/+")}}},
	{name: "5.0 with user property", v: V5, cite: "[v5 MQTT-3.10.1-1] [v5 MQTT-3.10.3-1]",
		in: pk("a2", "00 09", pl("26 00 01 'k' 00 00"), "00 01 'a'"),
		want: &Unsubscribe{PacketID: 9, Properties: Properties{User: []UserProperty{{bs("k"), bs("")}}},
			Filters: [][]byte{bs("a")}}},

	{name: "UNSUBSCRIBE with flags 0", v: V311, code: MalformedPacket, cite: "[v3.1.1 MQTT-3.10.1-1] [v5 MQTT-3.10.1-1]",
		in: pk("a0", "00 01", "00 01 'a'")},
	{name: "3.1.1 UNSUBSCRIBE without filters", v: V311, code: ProtocolError, cite: "[v3.1.1 MQTT-3.10.3-2]",
		in: pk("a2", "00 01")},
	{name: "5.0 UNSUBSCRIBE without filters", v: V5, code: ProtocolError, cite: "[v5 MQTT-3.10.3-2]",
		in: pk("a2", "00 01", "00")},
	{name: "UNSUBSCRIBE packet identifier 0", v: V311, code: ProtocolError, in: pk("a2", "00 00", "00 01 'a'")},
	{name: "UNSUBSCRIBE filter ill-formed", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.10.3-1]",
		in: pk("a2", "00 01", "00", "00 02 ed bf")},
	{name: "subscription identifier in UNSUBSCRIBE", v: V5, code: MalformedPacket, in: pk("a2", "00 01", "02 0b 01", "00 01 'a'")},
}

var unsubackCases = []codecCase{
	{name: "3.1.1 UNSUBACK", v: V311, in: pk("b0", "00 09"), want: &Unsuback{PacketID: 9}},
	{name: "5.0 UNSUBACK", v: V5, cite: "[v5 MQTT-3.11.3-2]",
		in: pk("b0", "00 09", "00", "00 11"), want: &Unsuback{PacketID: 9, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "3.1.1 UNSUBACK with a code", v: V311, code: MalformedPacket, in: pk("b0", "00 09 00")},
	{name: "5.0 UNSUBACK code not for UNSUBACK", v: V5, code: ProtocolError, in: pk("b0", "00 09 00 10")},
	{name: "5.0 UNSUBACK without codes", v: V5, code: ProtocolError, in: pk("b0", "00 09 00")},
}

var controlCases = []codecCase{
	{name: "PINGREQ", v: V311, in: hx("c0 00"), want: &Pingreq{}},
	{name: "PINGRESP", v: V5, in: hx("d0 00"), want: &Pingresp{}},
	{name: "PINGREQ with flags", v: V311, code: MalformedPacket, in: hx("c1 00")},
	{name: "PINGREQ with a body", v: V5, code: MalformedPacket, in: hx("c0 01 00")},
	{name: "PINGRESP with a body", v: V311, code: MalformedPacket, in: hx("d0 01 00")},

	{name: "3.1.1 DISCONNECT", v: V311, in: hx("e0 00"), want: &Disconnect{}},
	{name: "5.0 DISCONNECT short form", v: V5, in: hx("e0 00"), want: &Disconnect{}},
	{name: "5.0 DISCONNECT with will", v: V5, in: pk("e0", "04"), want: &Disconnect{ReasonCode: DisconnectWithWill}},
	{name: "5.0 DISCONNECT with properties", v: V5,
		in:   pk("e0", "00", pl("11 00 00 00 0a", "1f 00 04 'done'")),
		want: &Disconnect{Properties: present(Properties{SessionExpiry: 10, ReasonString: bs("done")}, PropSessionExpiry, PropReasonString)}},
	{name: "5.0 DISCONNECT server moved", v: V5,
		in:   pk("e0", "9d", pl("1c 00 06 'b:1883'") /* server reference */),
		want: &Disconnect{ReasonCode: ServerMoved, Properties: present(Properties{ServerReference: bs("b:1883")}, PropServerReference)}},
	{name: "5.0 DISCONNECT reason only", v: V5, in: pk("e0", "8e", "00"), want: &Disconnect{ReasonCode: SessionTakenOver}, noncanonical: true},

	{name: "3.1.1 DISCONNECT with a body", v: V311, code: MalformedPacket, in: hx("e0 01 00")},
	{name: "DISCONNECT with flags", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.14.1-1] [v3.1.1 MQTT-3.14.1-1]", in: hx("e1 00")},
	{name: "5.0 DISCONNECT reason code not for DISCONNECT", v: V5, code: ProtocolError, in: pk("e0", "05")},
	{name: "5.0 DISCONNECT with will delay", v: V5, code: MalformedPacket, in: pk("e0", "00", "05 18 00 00 00 01")},

	{name: "5.0 AUTH short form", v: V5, in: hx("f0 00"), want: &Auth{}},
	{name: "5.0 AUTH continue", v: V5,
		in: pk("f0", "18", pl("15 00 05 'SCRAM'", "16 00 02 'xy'")),
		want: &Auth{ReasonCode: ContinueAuthentication, Properties: present(Properties{AuthMethod: bs("SCRAM"), AuthData: bs("xy")},
			PropAuthMethod, PropAuthData)}},
	{name: "5.0 AUTH re-authenticate", v: V5,
		in:   pk("f0", "19", pl("15 00 01 'm'")),
		want: &Auth{ReasonCode: ReAuthenticate, Properties: present(Properties{AuthMethod: bs("m")}, PropAuthMethod)}},
	{name: "AUTH in 3.1.1", v: V311, code: MalformedPacket, in: hx("f0 00")},
	{name: "5.0 AUTH with flags", v: V5, code: MalformedPacket, cite: "[v5 MQTT-3.15.1-1]", in: hx("f2 00")},
	{name: "5.0 AUTH failure code", v: V5, code: ProtocolError, in: pk("f0", "80", pl("15 00 01 'm'"))},
	{name: "5.0 AUTH without method", v: V5, code: ProtocolError, in: pk("f0", "18", "00")},
}

var headerCases = []codecCase{
	{name: "reserved type 0", v: V311, code: MalformedPacket, in: hx("00 00")},
	{name: "remaining length of five bytes", v: V311, code: MalformedPacket, in: hx("30 ff ff ff ff 01")},
	{name: "remaining length not minimal", v: V5, code: MalformedPacket, cite: "[v5 MQTT-1.5.5-1]", in: hx("c0 80 00")},
}

func allCases() map[string][]codecCase {
	return map[string][]codecCase{
		"CONNECT": connectCases, "CONNACK": connackCases, "PUBLISH": publishCases, "ACK": ackCases,
		"SUBSCRIBE": subscribeCases, "SUBACK": subackCases, "UNSUBSCRIBE": unsubscribeCases,
		"UNSUBACK": unsubackCases, "CONTROL": controlCases, "HEADER": headerCases,
	}
}

func TestCodecTable(t *testing.T) {
	t.Parallel()
	n := 0
	for group, cases := range allCases() {
		for _, tc := range cases {
			n++
			t.Run(group+"/"+tc.name, func(t *testing.T) {
				got, err := decodeAll(t, tc.in, tc.v)
				if tc.want == nil {
					var e *Error
					if !errors.As(err, &e) {
						t.Fatalf("decode = %v, %v; want an *Error with code %v", got, err, tc.code)
					}
					if e.Code != tc.code {
						t.Fatalf("code = %v, want %v (%v)", e.Code, tc.code, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if d := diff(tc.want, got); d != "" {
					t.Fatalf("decoded packet (-want +got):\n%s", d)
				}
				v := tc.v
				if c, ok := got.(*Connect); ok {
					v = c.Version
				}
				if size := tc.want.Size(v); size != len(tc.in) && !tc.noncanonical {
					t.Errorf("Size = %d, want %d", size, len(tc.in))
				}
				enc, err := tc.want.Append(nil, v)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if len(enc) != tc.want.Size(v) {
					t.Errorf("encoded %d bytes, Size says %d", len(enc), tc.want.Size(v))
				}
				if !tc.noncanonical && string(enc) != string(tc.in) {
					t.Errorf("re-encoded\n got % x\nwant % x", enc, tc.in)
				}
				again, err := decodeAll(t, enc, tc.v)
				if err != nil {
					t.Fatalf("decode of re-encoding: %v", err)
				}
				if d := diff(tc.want, again); d != "" {
					t.Fatalf("re-decoded packet (-want +got):\n%s", d)
				}
			})
		}
	}
	if n < 150 {
		t.Errorf("only %d cases", n)
	}
}

func TestTruncatedStreams(t *testing.T) {
	t.Parallel()
	// Every valid packet cut anywhere before its end is an unexpected EOF
	// (or a clean EOF before the first byte), never a panic or a packet.
	for group, cases := range allCases() {
		for _, tc := range cases {
			if tc.want == nil {
				continue
			}
			for cut := 0; cut < len(tc.in); cut++ {
				_, err := decodeAll(t, tc.in[:cut], tc.v)
				if cut == 0 && err == io.EOF {
					continue
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("%s/%s cut at %d: err = %v, want unexpected EOF", group, tc.name, cut, err)
				}
			}
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p    Packet
		want string
	}{
		{&Publish{Topic: bs("a/b"), QoS: QoS1, PacketID: 7, Retain: true, Payload: bs("x"),
			Properties: present(Properties{MessageExpiry: 9, SubscriptionIDs: []uint32{2}, User: []UserProperty{{bs("k"), bs("v")}}}, PropMessageExpiry)},
			`PUBLISH topic="a/b" qos=1 id=7 retain payload="x" expiry=9 sub-ids=[2] user["k"="v"]`},
		{&Connack{SessionPresent: true}, `CONNACK present code=0x00`},
		{&Ack{PacketType: PUBREC, PacketID: 3, ReasonCode: QuotaExceeded}, `PUBREC id=3 code=0x97`},
		{&Suback{PacketID: 1, ReasonCodes: []ReasonCode{1, 0x80}}, `SUBACK id=1 codes=[0x01 0x80]`},
		{&Disconnect{ReasonCode: SessionTakenOver}, `DISCONNECT code=0x8e`},
	}
	for _, c := range cases {
		if got := Format(c.p); got != c.want {
			t.Errorf("Format = %s\n want   %s", got, c.want)
		}
	}
}
