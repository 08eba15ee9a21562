package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Selector chooses nodes by their labels. The syntax is the equality- and
// set-based subset of Kubernetes label selectors, requirements separated
// by commas, all of which must hold:
//
//	key=value  key==value  key!=value
//	key in (v1,v2)  key notin (v1,v2)
//	key  !key                (has the label / has not)
//
// The empty selector matches every node.
type Selector struct {
	reqs []requirement
}

type selOp uint8

const (
	opEq selOp = iota
	opNe
	opIn
	opNotIn
	opExists
	opNotExists
)

type requirement struct {
	key    string
	op     selOp
	values []string
}

// ParseSelector parses a selector.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	p := selParser{s: s}
	p.space()
	if p.done() {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return Selector{}, fmt.Errorf("selector %q: %w", s, err)
		}
		sel.reqs = append(sel.reqs, r)
		p.space()
		if p.done() {
			return sel, nil
		}
		if !p.eat(",") {
			return Selector{}, fmt.Errorf("selector %q: ',' expected at %d", s, p.i)
		}
	}
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, has := labels[r.key]
		var ok bool
		switch r.op {
		case opEq:
			ok = has && v == r.values[0]
		case opNe:
			ok = !has || v != r.values[0]
		case opIn:
			ok = has && slices.Contains(r.values, v)
		case opNotIn:
			ok = !has || !slices.Contains(r.values, v)
		case opExists:
			ok = has
		case opNotExists:
			ok = !has
		}
		if !ok {
			return false
		}
	}
	return true
}

// String returns the selector in canonical form.
func (s Selector) String() string {
	var b strings.Builder
	for i, r := range s.reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		switch r.op {
		case opEq:
			b.WriteString(r.key + "=" + r.values[0])
		case opNe:
			b.WriteString(r.key + "!=" + r.values[0])
		case opIn:
			b.WriteString(r.key + " in (" + strings.Join(r.values, ",") + ")")
		case opNotIn:
			b.WriteString(r.key + " notin (" + strings.Join(r.values, ",") + ")")
		case opExists:
			b.WriteString(r.key)
		case opNotExists:
			b.WriteString("!" + r.key)
		}
	}
	return b.String()
}

type selParser struct {
	s string
	i int
}

func (p *selParser) done() bool { return p.i >= len(p.s) }

func (p *selParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *selParser) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

// word reads a run of label characters (keys may hold '/').
func (p *selParser) word(slash bool) string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || (slash && c == '/')
		if !ok {
			break
		}
		p.i++
	}
	return p.s[start:p.i]
}

func (p *selParser) requirement() (requirement, error) {
	p.space()
	if p.eat("!") {
		p.space()
		k := p.word(true)
		if err := ValidLabel(k, ""); err != nil {
			return requirement{}, err
		}
		return requirement{key: k, op: opNotExists}, nil
	}
	k := p.word(true)
	if err := ValidLabel(k, ""); err != nil {
		return requirement{}, err
	}
	p.space()
	switch {
	case p.done() || p.s[p.i] == ',':
		return requirement{key: k, op: opExists}, nil
	case p.eat("!="):
		return p.single(k, opNe)
	case p.eat("=="), p.eat("="):
		return p.single(k, opEq)
	}
	op := opIn
	switch {
	case p.eat("notin"):
		op = opNotIn
	case p.eat("in"):
	default:
		return requirement{}, fmt.Errorf("operator expected after %q at %d", k, p.i)
	}
	p.space()
	if !p.eat("(") {
		return requirement{}, fmt.Errorf("'(' expected at %d", p.i)
	}
	var vals []string
	for {
		p.space()
		v := p.word(false)
		if err := ValidLabel(k, v); err != nil {
			return requirement{}, err
		}
		vals = append(vals, v)
		p.space()
		if p.eat(")") {
			break
		}
		if !p.eat(",") {
			return requirement{}, fmt.Errorf("',' or ')' expected at %d", p.i)
		}
	}
	slices.Sort(vals)
	return requirement{key: k, op: op, values: slices.Compact(vals)}, nil
}

func (p *selParser) single(k string, op selOp) (requirement, error) {
	p.space()
	v := p.word(false)
	if err := ValidLabel(k, v); err != nil {
		return requirement{}, err
	}
	return requirement{key: k, op: op, values: []string{v}}, nil
}

// EncodeJoin returns the join string of a token: base64url of its JSON,
// one word to paste on a node's command line.
func EncodeJoin(j JoinToken) string {
	b, _ := json.Marshal(j)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeJoin reads a join string.
func DecodeJoin(s string) (JoinToken, error) {
	var j JoinToken
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return j, errors.New("join token: not base64url")
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, errors.New("join token: not a join document")
	}
	if j.API == "" || j.Token == "" || ValidSHA256(j.CAHash) != nil {
		return j, errors.New("join token: api, ca_sha256 and token are required")
	}
	return j, nil
}
