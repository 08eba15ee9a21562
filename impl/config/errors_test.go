package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestErrorsNameLineAndPath: every configuration error names the line and
// the YAML path, in the file's words, never a Go type or the decoder's
// jargon (issue 13 item 15).
func TestErrorsNameLineAndPath(t *testing.T) {
	t.Parallel()
	cases := []struct{ yaml, want string }{
		{"limits:\n  connect_timeout: abc\n",
			`config: line 2: limits.connect_timeout: "abc" is not a duration (like 500ms, 10s or 1m30s)`},
		{"limits:\n  connect_timeout: 10\n",
			`config: line 2: limits.connect_timeout: "10" is not a duration (like 500ms, 10s or 1m30s)`},
		{"mqtt:\n  max_qos: high\n",
			`config: line 2: mqtt.max_qos: "high" is not a whole number`},
		{"storage:\n  max_bytes: -1\n",
			`config: line 2: storage.max_bytes: "-1" is not a whole number of 0 or more`},
		{"mqtt:\n  retain_available: maybe\n",
			`config: line 2: mqtt.retain_available: "maybe" is not true or false`},
		{"listeners: {a: 1}\n",
			`config: line 1: listeners: a mapping is not a list`},
		{"auth:\n  jwt: {secret: s, issuer: [a]}\n",
			`config: line 2: auth.jwt.issuer: a list is not a string`},
		{"limits:\n  recieve_maximum: 5\n",
			`config: line 2: limits.recieve_maximum: unknown field (did you mean receive_maximum?)`},
		{"limits:\n  max_inflight: q\n  zzz: 1\n",
			"config: line 2: limits.max_inflight: \"q\" is not a whole number\n" +
				"line 3: limits.zzz: unknown field (known here: connect_timeout, write_timeout, max_connections, max_packet_size, max_inflight, max_queued, max_queued_bytes, max_output_bytes, receive_maximum, topic_alias_maximum, max_keepalive, max_session_expiry)"},
		{"listeners:\n  - name: a\n    addr: x:1\n  - name: b\n    type: udp\n    addr: x:2\n",
			`config: line 5: listeners[1].type: must be tcp, tls, ws or wss, not "udp"`},
		{"listeners:\n  - name: a\n    type: tcp\n",
			`config: line 2: listeners[0].addr: required (host:port)`},
		{"log:\n  level: loud\nmqtt:\n  max_qos: 3\n",
			"config: line 2: log.level: must be debug, info, warn or error, not \"loud\"\nline 4: mqtt.max_qos: must be 0, 1 or 2"},
		{"tenants:\n  tenants:\n    acme: {publish_rate: x}\n",
			`config: line 3: tenants.tenants.acme.publish_rate: "x" is not a whole number`},
		{"tenants:\n  tenants:\n    acme:\n      publsh_rate: 5\n",
			`config: line 4: tenants.tenants.acme.publsh_rate: unknown field (did you mean publish_rate?)`},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.yaml))
		if err == nil {
			t.Errorf("Parse(%q) accepted", c.yaml)
			continue
		}
		if d := cmp.Diff(c.want, err.Error()); d != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", c.yaml, d)
		}
		for _, jargon := range []string{"!!", "config.", "time.", "yaml:", "unmarshal", "[]"} {
			if strings.Contains(err.Error(), jargon) {
				t.Errorf("Parse(%q): %q speaks Go or YAML-library (%q)", c.yaml, err, jargon)
			}
		}
	}
}
