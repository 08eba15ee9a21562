package acl

import (
	"errors"
	"fmt"
	"strings"
)

// Permission says what a rule does when it applies.
type Permission uint8

// Permissions.
const (
	Allow Permission = iota + 1
	Deny
)

func (p Permission) String() string {
	switch p {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("Permission(%d)", uint8(p))
}

// Action is a set of the things a rule is about.
type Action uint8

// Actions. A retained publish is checked against rules with Publish or
// Retain; a plain publish against rules with Publish.
const (
	Publish Action = 1 << iota
	Subscribe
	Retain
	// All is publish (retained or not) and subscribe.
	All = Publish | Subscribe
)

func (a Action) String() string {
	var s []string
	if a&Publish != 0 {
		s = append(s, "publish")
	}
	if a&Subscribe != 0 {
		s = append(s, "subscribe")
	}
	if a&Retain != 0 {
		s = append(s, "retain")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "|")
}

// Decision is what a set of rules says about one check.
type Decision uint8

// Decisions.
const (
	NoMatch Decision = iota // no rule applies: ask the next rules or the default
	Allowed
	Denied
)

func (d Decision) String() string {
	switch d {
	case NoMatch:
		return "no-match"
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

// Client is who a check is for.
type Client struct {
	Tenant   string
	User     string
	ClientID string
	// Extra are rules of this client's own, consulted before its tenant's
	// (from a JWT "acl" claim, a webhook answer); nil for none.
	Extra *Rules
}

// Authorizer decides what a client may do. Implementations are safe for
// concurrent use. CanPublish runs on every PUBLISH: it must be fast.
type Authorizer interface {
	CanPublish(c *Client, topic []byte, retain bool) bool
	CanSubscribe(c *Client, filter []byte) bool
}

// Rule is one compiled-ready rule.
type Rule struct {
	Permission Permission
	Actions    Action
	// Pattern is a topic filter with optional %u, %c, %t substitutions.
	Pattern string
	// Users and ClientIDs, when not empty, restrict the rule to clients
	// whose user name (client id) is listed.
	Users     []string
	ClientIDs []string
}

// Rules is an ordered, compiled list of rules. The zero value and nil hold
// no rule. A *Rules is immutable and safe for concurrent use.
type Rules struct {
	rules []rule
	// rest is what the rules say when none applies: NoMatch, or Denied
	// for an exclusive claim.
	rest Decision
}

// Len returns the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

type rule struct {
	perm    Permission
	actions Action
	pat     pattern
	users   map[string]struct{}
	clients map[string]struct{}
}

// kinds of pattern level.
const (
	levelLiteral = iota
	levelPlus
	levelHash
	levelSubst
)

// A substitution variable, or 0 for a literal part.
const (
	varNone   = 0
	varUser   = 'u'
	varClient = 'c'
	varTenant = 't'
)

// part is a piece of a level with substitutions: a literal or a variable.
type part struct {
	lit string
	v   byte
}

type level struct {
	kind  uint8
	lit   string // levelLiteral
	parts []part // levelSubst
}

type pattern struct {
	src    string
	levels []level
	vars   uint8 // bit set of the variables used (varMask)
	// prefix is the literal levels the pattern starts with, joined by '/':
	// a topic (or a filter, for contains) without it cannot match, which
	// rejects most rules with one comparison.
	prefix string
	// wide is what a deny rule covers when a value it substitutes is
	// unsafe: its levels before the first substitution, then '#'; wideAll
	// when that substitution is in the first level (everything).
	wide    *pattern
	wideAll bool
}

func varMask(v byte) uint8 {
	switch v {
	case varUser:
		return 1
	case varClient:
		return 2
	case varTenant:
		return 4
	}
	return 0
}

// compilePattern parses a pattern. Errors say what is wrong, without the
// field name (the caller adds it).
func compilePattern(src string) (pattern, error) {
	p := pattern{src: src}
	if src == "" {
		return p, errors.New("empty topic pattern")
	}
	if strings.HasPrefix(src, "$share/") {
		return p, errors.New("a pattern cannot be a shared subscription: shared filters are checked by their topic filter")
	}
	if strings.IndexByte(src, 0) >= 0 {
		return p, errors.New("U+0000 in topic pattern")
	}
	if len(src) > 65535 {
		return p, errors.New("topic pattern longer than 65535 bytes")
	}
	lv := strings.Split(src, "/")
	for i, s := range lv {
		switch {
		case s == "#":
			if i != len(lv)-1 {
				return p, fmt.Errorf("'#' must be the last level in %q", src)
			}
			p.levels = append(p.levels, level{kind: levelHash})
			continue
		case s == "+":
			p.levels = append(p.levels, level{kind: levelPlus})
			continue
		case strings.ContainsAny(s, "+#"):
			return p, fmt.Errorf("wildcard must fill its level in %q", src)
		}
		if strings.IndexByte(s, '%') < 0 {
			p.levels = append(p.levels, level{kind: levelLiteral, lit: s})
			continue
		}
		var parts []part
		var lit strings.Builder
		hasVar := false
		for j := 0; j < len(s); j++ {
			if s[j] != '%' {
				lit.WriteByte(s[j])
				continue
			}
			if j+1 >= len(s) {
				return p, fmt.Errorf("'%%' at the end of a level in %q (use %%%% for a literal '%%')", src)
			}
			j++
			switch c := s[j]; c {
			case '%':
				lit.WriteByte('%')
			case varUser, varClient, varTenant:
				if lit.Len() > 0 {
					parts = append(parts, part{lit: lit.String()})
					lit.Reset()
				}
				parts = append(parts, part{v: c})
				p.vars |= varMask(c)
				hasVar = true
			default:
				return p, fmt.Errorf("unknown substitution %%%c in %q (known: %%u, %%c, %%t, %%%%)", c, src)
			}
		}
		if !hasVar {
			p.levels = append(p.levels, level{kind: levelLiteral, lit: lit.String()})
			continue
		}
		if lit.Len() > 0 {
			parts = append(parts, part{lit: lit.String()})
		}
		p.levels = append(p.levels, level{kind: levelSubst, parts: parts})
	}
	p.prefix = literalPrefix(p.levels)
	for i, l := range p.levels {
		if l.kind != levelSubst {
			continue
		}
		if i == 0 {
			p.wideAll = true
			break
		}
		w := &pattern{src: src, levels: append(p.levels[:i:i], level{kind: levelHash})}
		w.prefix = literalPrefix(w.levels)
		p.wide = w
		break
	}
	return p, nil
}

func literalPrefix(levels []level) string {
	var b strings.Builder
	for i, l := range levels {
		if l.kind != levelLiteral {
			break
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(l.lit)
	}
	return b.String()
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// Compile checks and compiles rules, in order.
func Compile(rules []Rule) (*Rules, error) {
	out := &Rules{rules: make([]rule, 0, len(rules))}
	for i, r := range rules {
		if r.Permission != Allow && r.Permission != Deny {
			return nil, fmt.Errorf("rule %d: permission must be allow or deny", i)
		}
		if r.Actions == 0 || r.Actions&^(Publish|Subscribe|Retain) != 0 {
			return nil, fmt.Errorf("rule %d: no valid action", i)
		}
		p, err := compilePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		cr := rule{perm: r.Permission, actions: r.Actions, pat: p}
		if len(r.Users) > 0 {
			cr.users = make(map[string]struct{}, len(r.Users))
			for _, u := range r.Users {
				cr.users[u] = struct{}{}
			}
		}
		if len(r.ClientIDs) > 0 {
			cr.clients = make(map[string]struct{}, len(r.ClientIDs))
			for _, u := range r.ClientIDs {
				cr.clients[u] = struct{}{}
			}
		}
		out.rules = append(out.rules, cr)
	}
	return out, nil
}

// value returns the substitution value for v.
func value(c *Client, v byte) string {
	switch v {
	case varUser:
		return c.User
	case varClient:
		return c.ClientID
	case varTenant:
		return c.Tenant
	}
	return ""
}

// unsafeValue reports whether a substituted value could widen a pattern
// or make it ambiguous: empty, or holding a level separator or wildcard.
func unsafeValue(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/', '+', '#', 0:
			return true
		}
	}
	return false
}

// safeFor reports whether every value p substitutes is safe for c.
func (p *pattern) safeFor(c *Client) bool {
	if p.vars == 0 {
		return true
	}
	if p.vars&1 != 0 && unsafeValue(c.User) {
		return false
	}
	if p.vars&2 != 0 && unsafeValue(c.ClientID) {
		return false
	}
	if p.vars&4 != 0 && unsafeValue(c.Tenant) {
		return false
	}
	return true
}

// levelEquals reports whether the topic level b equals the (literal or
// substituted) pattern level l.
func levelEquals(b []byte, l *level, c *Client) bool {
	if l.kind == levelLiteral {
		return string(b) == l.lit
	}
	for _, pt := range l.parts {
		s := pt.lit
		if pt.v != varNone {
			s = value(c, pt.v)
		}
		if len(b) < len(s) || string(b[:len(s)]) != s {
			return false
		}
		b = b[len(s):]
	}
	return len(b) == 0
}

// levelDollar reports whether a literal or substituted level starts with '$'.
func levelDollar(l *level, c *Client) bool {
	switch l.kind {
	case levelLiteral:
		return len(l.lit) > 0 && l.lit[0] == '$'
	case levelSubst:
		for _, pt := range l.parts {
			s := pt.lit
			if pt.v != varNone {
				s = value(c, pt.v)
			}
			if len(s) > 0 {
				return s[0] == '$'
			}
		}
	}
	return false
}

// next returns the level of s starting at i and the start of the one after
// (len(s)+1 once the last level is consumed).
func next(s []byte, i int) ([]byte, int) {
	for j := i; j < len(s); j++ {
		if s[j] == '/' {
			return s[i:j], j + 1
		}
	}
	return s[i:], len(s) + 1
}

func isPlus(b []byte) bool { return len(b) == 1 && b[0] == '+' }
func isHash(b []byte) bool { return len(b) == 1 && b[0] == '#' }

// matchTopic reports whether the topic name t matches p for c.
func (p *pattern) matchTopic(t []byte, c *Client) bool {
	if !hasPrefix(t, p.prefix) {
		return false
	}
	i := 0
	for li := range p.levels {
		l := &p.levels[li]
		if l.kind == levelHash {
			// '#' also matches the parent level; a first-level wildcard
			// never matches a '$' topic.
			return !(li == 0 && len(t) > 0 && t[0] == '$')
		}
		if i > len(t) {
			return false
		}
		b, n := next(t, i)
		switch l.kind {
		case levelPlus:
			if li == 0 && len(b) > 0 && b[0] == '$' {
				return false
			}
		default:
			if !levelEquals(b, l, c) {
				return false
			}
		}
		i = n
	}
	return i > len(t)
}

// contains reports whether every topic the filter f can match is matched
// by p (for c).
func (p *pattern) contains(f []byte, c *Client) bool {
	if !hasPrefix(f, p.prefix) {
		return false
	}
	i := 0
	for li := range p.levels {
		l := &p.levels[li]
		if i > len(f) {
			// f has ended: "a" is inside "a/#".
			return l.kind == levelHash && li == len(p.levels)-1
		}
		b, n := next(f, i)
		dollar := li == 0 && len(b) > 0 && b[0] == '$'
		switch l.kind {
		case levelHash:
			return !dollar
		case levelPlus:
			if li == 0 && isHash(b) && len(p.levels) == 2 && p.levels[1].kind == levelHash {
				// A first-level "#" matches one level or more of a topic
				// not starting with '$': so does "+/#".
				return true
			}
			if isHash(b) || dollar {
				return false
			}
		default:
			if isPlus(b) || isHash(b) || !levelEquals(b, l, c) {
				return false
			}
		}
		i = n
	}
	return i > len(f)
}

// overlaps reports whether some topic could match both the filter f and p
// (for c).
func (p *pattern) overlaps(f []byte, c *Client) bool {
	i := 0
	for li := range p.levels {
		l := &p.levels[li]
		if i > len(f) {
			return l.kind == levelHash
		}
		b, n := next(f, i)
		first := li == 0
		switch {
		case isHash(b):
			// f's '#' takes anything from here on, its parent level included.
			return !(first && levelDollar(l, c))
		case l.kind == levelHash:
			return !(first && len(b) > 0 && b[0] == '$')
		case isPlus(b):
			if l.kind != levelPlus && first && levelDollar(l, c) {
				return false
			}
		case l.kind == levelPlus:
			if first && len(b) > 0 && b[0] == '$' {
				return false
			}
		default:
			if !levelEquals(b, l, c) {
				return false
			}
		}
		i = n
	}
	if i > len(f) {
		return true
	}
	// p has ended; f continues: they meet only if what is left of f is "#"
	// (which matches its parent, the topic p names).
	b, n := next(f, i)
	return isHash(b) && n > len(f)
}

func (r *rule) who(c *Client) bool {
	if r.users != nil {
		if _, ok := r.users[c.User]; !ok {
			return false
		}
	}
	if r.clients != nil {
		if _, ok := r.clients[c.ClientID]; !ok {
			return false
		}
	}
	return true
}

func verdict(p Permission) Decision {
	if p == Allow {
		return Allowed
	}
	return Denied
}

// Publish evaluates a publish to topic (retained or not) for c: the first
// rule that applies decides; NoMatch when none does.
func (r *Rules) Publish(c *Client, topic []byte, retain bool) Decision {
	if r == nil {
		return NoMatch
	}
	if c == nil {
		var zero Client
		c = &zero
	}
	want := Publish
	if retain {
		want |= Retain
	}
	for i := range r.rules {
		ru := &r.rules[i]
		if ru.actions&want == 0 || !ru.who(c) {
			continue
		}
		if !ru.pat.safeFor(c) {
			// Fail closed (see the package doc).
			if ru.perm == Deny && (ru.pat.wideAll || ru.pat.wide.matchTopic(topic, c)) {
				return Denied
			}
			continue
		}
		if ru.pat.matchTopic(topic, c) {
			return verdict(ru.perm)
		}
	}
	return r.rest
}

// Subscribe evaluates a subscription to filter for c ("$share/g/f" is
// checked as f): an allow rule applies when it covers the whole filter, a
// deny rule when it meets any part of it.
func (r *Rules) Subscribe(c *Client, filter []byte) Decision {
	if r == nil {
		return NoMatch
	}
	if c == nil {
		var zero Client
		c = &zero
	}
	filter = innerFilter(filter)
	for i := range r.rules {
		ru := &r.rules[i]
		if ru.actions&Subscribe == 0 || !ru.who(c) {
			continue
		}
		if !ru.pat.safeFor(c) {
			if ru.perm == Deny && (ru.pat.wideAll || ru.pat.wide.overlaps(filter, c)) {
				return Denied
			}
			continue
		}
		if ru.perm == Allow {
			if ru.pat.contains(filter, c) {
				return Allowed
			}
		} else if ru.pat.overlaps(filter, c) {
			return Denied
		}
	}
	return r.rest
}

// innerFilter returns the topic filter of a shared subscription, or filter.
func innerFilter(filter []byte) []byte {
	const prefix = "$share/"
	if len(filter) < len(prefix) || string(filter[:len(prefix)]) != prefix {
		return filter
	}
	rest := filter[len(prefix):]
	for i, b := range rest {
		if b == '/' {
			return rest[i+1:]
		}
	}
	return filter
}
