package routes

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/skybridge-mq/skybridge/impl/topic"
)

// keyTag starts every route key: the routes' part of the store's key space.
const keyTag = 'r'

// Route is one key's meaning: Node holds Count subscriptions to Filter in
// Tenant (members of the shared group Group when it is not empty).
type Route struct {
	Tenant string
	Filter string // without any $share/group/ prefix
	Group  string
	Node   string
	Count  uint64
}

var (
	errKey   = errors.New("routes: not a route key")
	errValue = errors.New("routes: bad route value")
	errName  = errors.New("routes: a tenant, filter, group or node holds U+0000, or is empty")
)

// valid reports whether s may go into a key: no U+0000 (and not empty
// unless empty is allowed).
func valid(s string, empty bool) bool {
	return (empty || s != "") && !bytes.Contains([]byte(s), []byte{0})
}

// splitFirst splits a filter or topic into its first level and the rest
// ("" or starting with '/').
func splitFirst(s []byte) (level0, rest []byte) {
	if i := bytes.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i:]
	}
	return s, nil
}

func tenantPrefix(dst []byte, tenant string) []byte {
	dst = append(dst, keyTag)
	dst = binary.AppendUvarint(dst, uint64(len(tenant)))
	return append(dst, tenant...)
}

// Key encodes r's key (Count goes in the value). A filter given as
// "$share/group/filter" is taken apart here.
func Key(r Route) ([]byte, error) {
	filter, group := []byte(r.Filter), r.Group
	if g, inner, ok := topic.ParseShared(filter); ok {
		if group != "" {
			return nil, errName
		}
		filter, group = inner, string(g)
	}
	if !valid(r.Tenant, true) || !valid(string(filter), false) || !valid(group, true) || !valid(r.Node, false) {
		return nil, errName
	}
	level0, rest := splitFirst(filter)
	k := tenantPrefix(make([]byte, 0, 8+len(r.Tenant)+len(filter)+len(group)+len(r.Node)), r.Tenant)
	k = append(k, level0...)
	k = append(k, 0)
	k = append(k, rest...)
	k = append(k, 0)
	k = append(k, group...)
	k = append(k, 0)
	return append(k, r.Node...), nil
}

// ParseKey decodes a key made by Key (Count is left 0).
func ParseKey(k []byte) (Route, error) {
	if len(k) == 0 || k[0] != keyTag {
		return Route{}, errKey
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || n > uint64(len(k)) || w != len(binary.AppendUvarint(nil, n)) { // canonical only: one key per route
		return Route{}, errKey
	}
	p := 1 + w
	if uint64(len(k)-p) < n {
		return Route{}, errKey
	}
	tenant := string(k[p : p+int(n)])
	parts := bytes.SplitN(k[p+int(n):], []byte{0}, 4)
	// The filter (level0 + rest) is not empty, its first level holds no
	// '/', the rest starts with one; the node is not empty and the last
	// part (SplitN leaves separators in it) holds no U+0000.
	if len(parts) != 4 || len(parts[0])+len(parts[1]) == 0 || len(parts[3]) == 0 || bytes.IndexByte(parts[3], 0) >= 0 ||
		bytes.IndexByte(parts[0], '/') >= 0 || (len(parts[1]) > 0 && parts[1][0] != '/') {
		return Route{}, errKey
	}
	r := Route{Tenant: tenant, Filter: string(parts[0]) + string(parts[1]), Group: string(parts[2]), Node: string(parts[3])}
	if !valid(tenant, true) {
		return Route{}, errKey
	}
	if _, _, ok := topic.ParseShared([]byte(r.Filter)); ok {
		return Route{}, errKey // Key takes a $share prefix apart: never stored
	}
	return r, nil
}

// Value encodes a route's count.
func Value(count uint64) []byte { return binary.AppendUvarint(nil, count) }

// ParseValue decodes a route's count.
func ParseValue(v []byte) (uint64, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || w != len(v) || w != len(binary.AppendUvarint(nil, n)) {
		return 0, errValue
	}
	return n, nil
}

// AllPrefix is the prefix of every route key.
func AllPrefix() []byte { return []byte{keyTag} }

// TenantPrefix is the prefix of every route key of tenant (for its
// removal, or a scan of its whole table).
func TenantPrefix(tenant string) []byte { return tenantPrefix(nil, tenant) }

// Prefixes returns the key prefixes that can hold filters matching topic
// in tenant, appended to dst: topic's first level, then '+' and '#'
// (which never match a topic starting with '$' [MQTT-4.7.2-1]).
func Prefixes(dst [][]byte, tenant string, topicName []byte) [][]byte {
	levels, n := prefixLevels(topicName)
	for _, l := range levels[:n] {
		dst = append(dst, appendPrefix(nil, tenant, l))
	}
	return dst
}

// prefixLevels are the first levels of the filters that can match topic
// (the first n of them).
func prefixLevels(topicName []byte) (levels [3][]byte, n int) {
	level0, _ := splitFirst(topicName)
	if len(topicName) > 0 && topicName[0] == '$' {
		return [3][]byte{level0}, 1
	}
	return [3][]byte{level0, plusLevel, hashLevel}, 3
}

var plusLevel, hashLevel = []byte("+"), []byte("#")

// appendPrefix appends the key prefix of tenant's filters whose first level
// is level.
func appendPrefix(dst []byte, tenant string, level []byte) []byte {
	return append(append(tenantPrefix(dst, tenant), level...), 0)
}

// PrefixOf returns the prefix (as Prefixes gives it) that holds key.
func PrefixOf(key []byte) ([]byte, bool) {
	r, err := ParseKey(key)
	if err != nil {
		return nil, false
	}
	level0, _ := splitFirst([]byte(r.Filter))
	return appendPrefix(nil, r.Tenant, level0), true
}
