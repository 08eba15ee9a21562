package tenant

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"acme", true},
		{"Acme-Corp_2.eu", true},
		{"0", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxNameLen+1), false},
		{"t1\x00status", false}, // the key-space escape the hardening issue found
		{"t1/x", false},
		{"_other", false}, // the metrics' own label
		{".hidden", false},
		{"-x", false},
		{"a b", false},
		{"a+", false},
		{"a#", false},
		{"é", false},
		{"a\n", false},
	} {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, not ErrInvalidName", tt.name, err)
		}
	}
}

func TestValidUser(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		user string
		ok   bool
	}{
		{"", true},
		{"alice", true},
		{"auth0|5f1c", true},
		{"josé@example.com", true},
		{"a/b/+/#", true}, // ACL substitution guards against wildcards itself
		{strings.Repeat("u", MaxUserLen), true},
		{strings.Repeat("u", MaxUserLen+1), false},
		{"bob\x00", false},
		{"bob\x1b[31m", false},
		{"bob\u0085", false},
		{"\xff\xfe", false},
	} {
		err := ValidUser(tt.user)
		if (err == nil) != tt.ok {
			t.Errorf("ValidUser(%q) = %v, want ok=%v", tt.user, err, tt.ok)
		}
	}
}

// Settings cannot be given to a tenant that could never connect.
func TestSettingsRefuseInvalidTenantNames(t *testing.T) {
	t.Parallel()
	p := NewProvider()
	if err := p.Set("t1\x00status", Default()); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Set with a NUL in the name: %v, want ErrInvalidName", err)
	}
	var c Config
	c.Defaults = Default()
	if err := yaml.Unmarshal([]byte("tenants:\n  \"bad name\":\n    max_qos: 1\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := p.Replace(c); err == nil || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("Replace with an invalid tenant name: %v, want an error naming it", err)
	}
}
