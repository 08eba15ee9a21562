package cluster

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Role is one job a node runs. A node runs any set of them (Roles).
type Role uint8

const (
	RoleFrontend Role = 1 << iota // MQTT listeners
	RoleRouting                   // route matching and forwarding
	RoleInbox                     // persistent-session queues
	RoleRetain                    // retained messages
	RoleKV                        // raftkv replicas
)

// roleNames is in bit order, which is also the order Names returns.
var roleNames = []struct {
	role Role
	name string
}{
	{RoleFrontend, "frontend"},
	{RoleRouting, "routing"},
	{RoleInbox, "inbox"},
	{RoleRetain, "retain"},
	{RoleKV, "kv"},
}

// knownRoles masks the role bits this version understands.
const knownRoles = RoleFrontend | RoleRouting | RoleInbox | RoleRetain | RoleKV

// AllRoles is what a standalone or all-role node runs.
const AllRoles = Roles(knownRoles)

// Roles is a set of roles.
type Roles uint8

// Has reports whether r includes role.
func (r Roles) Has(role Role) bool { return Roles(role)&r != 0 }

// Names returns the names of the roles in r, in a fixed order.
func (r Roles) Names() []string {
	var out []string
	for _, rn := range roleNames {
		if r.Has(rn.role) {
			out = append(out, rn.name)
		}
	}
	return out
}

func (r Roles) String() string { return strings.Join(r.Names(), ",") }

// ParseRoles turns role names (as in the configuration) into a set.
func ParseRoles(names []string) (Roles, error) {
	var r Roles
next:
	for _, n := range names {
		for _, rn := range roleNames {
			if n == rn.name {
				r |= Roles(rn.role)
				continue next
			}
		}
		return 0, fmt.Errorf("cluster: unknown role %q (known: %s)", n, AllRoles)
	}
	return r, nil
}

// Meta is what a node tells the cluster about itself. It travels in
// memberlist's node metadata, encoded by Encode.
type Meta struct {
	// Cluster is the cluster's name; a node of another cluster is refused.
	Cluster string
	// Incarnation is chosen by the node when it starts, strictly higher on
	// every restart of the same node id.
	Incarnation uint64
	Roles       Roles
	// Leaving is set by a node that is leaving gracefully, just before it
	// leaves: it is how observers tell a leave from a failure.
	Leaving bool
	// Addresses other nodes and clients use (host:port, empty when the
	// node does not serve it).
	MQTT    string // MQTT listener advertised to clients (redirects)
	Forward string // inter-node publish forwarding
	KV      string // raftkv
}

const (
	// MaxMetaSize is memberlist's limit on node metadata (memberlist.MetaMaxSize).
	MaxMetaSize = 512
	// MaxClusterName bounds the cluster name; the gossip runtime also uses
	// it in memberlist's label, which is limited to 255 bytes.
	MaxClusterName = 64
	// MaxAddress bounds one advertised address.
	MaxAddress = 128

	metaVersion = 1
	flagLeaving = 1 << 0
	knownFlags  = flagLeaving
)

// Errors of the metadata codec.
var (
	ErrMetaTooLarge = errors.New("cluster: metadata larger than 512 bytes")
	ErrMetaShort    = errors.New("cluster: metadata truncated")
)

// Validate checks the fields' bounds and forms.
func (m Meta) Validate() error {
	if m.Cluster == "" || len(m.Cluster) > MaxClusterName || !utf8.ValidString(m.Cluster) {
		return fmt.Errorf("cluster: cluster name must be 1 to %d bytes of UTF-8", MaxClusterName)
	}
	if m.Roles&^Roles(knownRoles) != 0 {
		return fmt.Errorf("cluster: unknown role bits %#x", uint8(m.Roles&^Roles(knownRoles)))
	}
	for _, a := range []struct{ name, addr string }{{"mqtt", m.MQTT}, {"forward", m.Forward}, {"kv", m.KV}} {
		if err := validAddress(a.addr); err != nil {
			return fmt.Errorf("cluster: %s address %q: %w", a.name, a.addr, err)
		}
	}
	return nil
}

func validAddress(a string) error {
	if a == "" {
		return nil
	}
	if len(a) > MaxAddress {
		return fmt.Errorf("longer than %d bytes", MaxAddress)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return errors.New("port must be 1 to 65535")
	}
	return nil
}

// Encode returns the metadata's wire form (version 1):
//
//	version     1 byte (1)
//	flags       1 byte (bit 0: leaving)
//	roles       1 byte (bit 0 frontend, 1 routing, 2 inbox, 3 retain, 4 kv)
//	incarnation uvarint
//	cluster, mqtt, forward, kv: each a uvarint length and that many bytes
//
// A later version appends fields after these and may set bits this one
// does not know; a version-1 decoder reads the prefix and ignores the rest,
// so nodes of two versions can share a cluster during an upgrade.
func (m Meta) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 3+binary.MaxVarintLen64+4+len(m.Cluster)+len(m.MQTT)+len(m.Forward)+len(m.KV))
	var flags byte
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, metaVersion, flags, byte(m.Roles))
	b = binary.AppendUvarint(b, m.Incarnation)
	for _, s := range []string{m.Cluster, m.MQTT, m.Forward, m.KV} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	if len(b) > MaxMetaSize {
		return nil, ErrMetaTooLarge
	}
	return b, nil
}

// DecodeMeta parses Encode's output. It never panics and refuses anything
// Validate would refuse.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > MaxMetaSize {
		return m, ErrMetaTooLarge
	}
	if len(b) < 3 {
		return m, ErrMetaShort
	}
	version, flags, roles := b[0], b[1], Roles(b[2])
	if version == 0 {
		return m, errors.New("cluster: metadata version 0")
	}
	if version == metaVersion && (flags&^knownFlags != 0 || roles&^Roles(knownRoles) != 0) {
		return m, fmt.Errorf("cluster: metadata v1 with unknown bits (flags %#x, roles %#x)", flags, uint8(roles))
	}
	m.Leaving = flags&flagLeaving != 0
	m.Roles = roles & Roles(knownRoles)
	b = b[3:]
	inc, n := binary.Uvarint(b)
	if n <= 0 {
		return Meta{}, errors.New("cluster: metadata incarnation malformed")
	}
	m.Incarnation = inc
	b = b[n:]
	for _, dst := range []*string{&m.Cluster, &m.MQTT, &m.Forward, &m.KV} {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return Meta{}, ErrMetaShort
		}
		*dst = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if version == metaVersion && len(b) != 0 {
		return Meta{}, fmt.Errorf("cluster: %d bytes after metadata v1", len(b))
	}
	if err := m.Validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// compareMeta orders metadata totally, to settle two different reports
// with the same (Incarnation, Seq) the same way whatever their order.
func compareMeta(a, b Meta) int {
	return cmp.Or(
		strings.Compare(a.Cluster, b.Cluster),
		cmp.Compare(a.Incarnation, b.Incarnation),
		cmp.Compare(a.Roles, b.Roles),
		cmp.Compare(boolRank(a.Leaving), boolRank(b.Leaving)),
		strings.Compare(a.MQTT, b.MQTT),
		strings.Compare(a.Forward, b.Forward),
		strings.Compare(a.KV, b.KV),
	)
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
