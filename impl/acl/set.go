package acl

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// RuleConfig is one rule as written in a configuration file (YAML or JSON).
type RuleConfig struct {
	// Permission is "allow" or "deny".
	Permission string `yaml:"permission" json:"permission"`
	// Action is "publish", "subscribe", "retain" (a publish with RETAIN 1)
	// or "all" (publish and subscribe); several may be joined with '|'.
	Action string `yaml:"action" json:"action"`
	// Topics are patterns: topic filters with %u, %c, %t substitutions.
	Topics []string `yaml:"topics" json:"topics"`
	// Users and Clients, when set, restrict the rule to those user names
	// and client ids.
	Users   []string `yaml:"users,omitempty" json:"users,omitempty"`
	Clients []string `yaml:"clients,omitempty" json:"clients,omitempty"`
}

// Config is the authorization part of the broker's configuration.
type Config struct {
	// DefaultDeny refuses what no rule decides; by default it is allowed.
	DefaultDeny bool `yaml:"default_deny" json:"default_deny"`
	// Tenants are each tenant's rules, consulted before Global.
	Tenants map[string][]RuleConfig `yaml:"tenants" json:"tenants"`
	// Global rules apply to every tenant, after its own.
	Global []RuleConfig `yaml:"global" json:"global"`
}

// parsePermission reads "allow" or "deny".
func parsePermission(s string) (Permission, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("must be allow or deny, not %q", s)
}

// ParseAction reads an action: publish, subscribe, retain, all, or several
// joined with '|' ("publish|subscribe").
func ParseAction(s string) (Action, error) {
	var a Action
	for _, w := range strings.Split(s, "|") {
		switch strings.ToLower(strings.TrimSpace(w)) {
		case "publish", "pub":
			a |= Publish
		case "subscribe", "sub":
			a |= Subscribe
		case "retain":
			a |= Retain
		case "all", "pubsub":
			a |= All
		default:
			return 0, fmt.Errorf("must be publish, subscribe, retain or all, not %q", s)
		}
	}
	return a, nil
}

// compileConfig compiles rule configs; field is their name for errors
// ("global", `tenants["t1"]`). All problems are reported.
func compileConfig(field string, rcs []RuleConfig) (*Rules, error) {
	var errs []error
	bad := func(f string, err error) { errs = append(errs, fmt.Errorf("%s: %w", f, err)) }
	var rules []Rule
	for i, rc := range rcs {
		rf := field + "[" + strconv.Itoa(i) + "]"
		perm, err := parsePermission(rc.Permission)
		if err != nil {
			bad(rf+".permission", err)
		}
		act, err := ParseAction(rc.Action)
		if err != nil {
			bad(rf+".action", err)
		}
		if len(rc.Topics) == 0 {
			bad(rf+".topics", errors.New("at least one topic pattern is required"))
		}
		for j, t := range rc.Topics {
			if _, err := compilePattern(t); err != nil {
				bad(rf+".topics["+strconv.Itoa(j)+"]", err)
			}
			rules = append(rules, Rule{Permission: perm, Actions: act, Pattern: t, Users: rc.Users, ClientIDs: rc.Clients})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r, err := Compile(rules)
	if err != nil { // unreachable: every piece was checked above
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return r, nil
}

// CompileConfig compiles a list of rule configs. Errors name the rule's
// index and field ("[2].topics[0]: ...").
func CompileConfig(rcs []RuleConfig) (*Rules, error) { return compileConfig("", rcs) }

type state struct {
	deny    bool
	global  *Rules
	tenants map[string]*Rules
}

func build(cfg Config) (*state, error) {
	st := &state{deny: cfg.DefaultDeny, tenants: make(map[string]*Rules, len(cfg.Tenants))}
	var errs []error
	g, err := compileConfig("global", cfg.Global)
	if err != nil {
		errs = append(errs, err)
	}
	st.global = g
	names := make([]string, 0, len(cfg.Tenants))
	for name := range cfg.Tenants {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a stable order
	for _, name := range names {
		field := "tenants[" + strconv.Quote(name) + "]"
		if name == "" {
			errs = append(errs, fmt.Errorf("%s: empty tenant name", field))
			continue
		}
		r, err := compileConfig(field, cfg.Tenants[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.tenants[name] = r
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return st, nil
}

// Validate checks every rule and reports all problems, each naming its
// field relative to the Config ("tenants[\"t1\"][0].topics[1]: ...").
func (c *Config) Validate() error {
	_, err := build(*c)
	return err
}

// Set is the configured authorizer: per-tenant and global rules and a
// default, replaceable at run time. It implements Authorizer.
//
// The zero Set has no rules and allows everything, like NewSet(Config{}).
type Set struct {
	cur atomic.Pointer[state]
}

var emptyState state

func (s *Set) load() *state {
	if st := s.cur.Load(); st != nil {
		return st
	}
	return &emptyState
}

// NewSet compiles cfg.
func NewSet(cfg Config) (*Set, error) {
	st, err := build(cfg)
	if err != nil {
		return nil, err
	}
	s := &Set{}
	s.cur.Store(st)
	return s, nil
}

// Replace compiles cfg and swaps it in atomically. On error the current
// rules stay in force.
func (s *Set) Replace(cfg Config) error {
	st, err := build(cfg)
	if err != nil {
		return err
	}
	s.cur.Store(st)
	return nil
}

func (st *state) decide(d Decision) bool {
	switch d {
	case Allowed:
		return true
	case Denied:
		return false
	}
	return !st.deny
}

// CanPublish implements Authorizer.
func (s *Set) CanPublish(c *Client, topic []byte, retain bool) bool {
	if c == nil {
		return false
	}
	st := s.load()
	if d := c.Extra.Publish(c, topic, retain); d != NoMatch {
		return d == Allowed
	}
	if d := st.tenants[c.Tenant].Publish(c, topic, retain); d != NoMatch {
		return d == Allowed
	}
	return st.decide(st.global.Publish(c, topic, retain))
}

// CanSubscribe implements Authorizer.
func (s *Set) CanSubscribe(c *Client, filter []byte) bool {
	if c == nil {
		return false
	}
	st := s.load()
	if d := c.Extra.Subscribe(c, filter); d != NoMatch {
		return d == Allowed
	}
	if d := st.tenants[c.Tenant].Subscribe(c, filter); d != NoMatch {
		return d == Allowed
	}
	return st.decide(st.global.Subscribe(c, filter))
}

// Claim is the ACL a client brings: a JWT's "acl" claim or a webhook's
// "acl" answer, as JSON:
//
//	{"publish": ["devices/%c/up"], "subscribe": ["devices/%c/down/#"],
//	 "rules": [{"permission": "deny", "action": "retain", "topics": ["#"]}]}
//
// Rules come first, then publish (allow) and subscribe (allow) patterns.
type Claim struct {
	Publish   []string     `json:"publish,omitempty"`
	Subscribe []string     `json:"subscribe,omitempty"`
	Rules     []RuleConfig `json:"rules,omitempty"`
}

// Compile turns the claim into Rules for Client.Extra. With exclusive,
// anything the claim does not decide is denied instead of falling through
// to the tenant's rules.
func (c *Claim) Compile(exclusive bool) (*Rules, error) {
	rcs := slices.Clone(c.Rules)
	if len(c.Publish) > 0 {
		rcs = append(rcs, RuleConfig{Permission: "allow", Action: "publish", Topics: c.Publish})
	}
	if len(c.Subscribe) > 0 {
		rcs = append(rcs, RuleConfig{Permission: "allow", Action: "subscribe", Topics: c.Subscribe})
	}
	r, err := CompileConfig(rcs)
	if err != nil {
		return nil, err
	}
	if exclusive {
		r.rest = Denied
	}
	return r, nil
}

// AllOf is an Authorizer that allows only what every one of its members
// allows (for example a Set and a webhook authorizer).
type AllOf []Authorizer

// CanPublish implements Authorizer.
func (a AllOf) CanPublish(c *Client, topic []byte, retain bool) bool {
	for _, x := range a {
		if !x.CanPublish(c, topic, retain) {
			return false
		}
	}
	return true
}

// CanSubscribe implements Authorizer.
func (a AllOf) CanSubscribe(c *Client, filter []byte) bool {
	for _, x := range a {
		if !x.CanSubscribe(c, filter) {
			return false
		}
	}
	return true
}
