package tenant

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestOverridesStartFromDefaults(t *testing.T) {
	t.Parallel()
	var c Config
	c.Defaults = Default()
	if err := yaml.Unmarshal([]byte(`
defaults:
  max_qos: 1
tenants:
  acme:
    max_connections: 5
  slow:
    publish_rate: 10
    max_qos: 0
`), &c); err != nil {
		t.Fatal(err)
	}
	p := NewProvider()
	v := p.Version()
	if err := p.Replace(c); err != nil {
		t.Fatal(err)
	}
	if p.Version() == v {
		t.Fatal("Replace did not change the version")
	}
	acme, slow, other := p.Get("acme"), p.Get("slow"), p.Get("nobody")
	if acme.MaxConnections != 5 || acme.MaxQoS != 1 || !acme.RetainEnabled {
		t.Errorf("acme = %+v: want the override on top of the defaults", acme)
	}
	if slow.PublishRate != 10 || slow.MaxQoS != 0 {
		t.Errorf("slow = %+v", slow)
	}
	if other.MaxQoS != 1 || other.MaxConnections != 0 {
		t.Errorf("a tenant without overrides = %+v: want the defaults", other)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	t.Parallel()
	var c Config
	c.Defaults = Default()
	if err := yaml.Unmarshal([]byte("tenants:\n  acme:\n    max_qos: 5\n    inbox_size: 0\n"), &c); err != nil {
		t.Fatal(err)
	}
	p := NewProvider()
	err := p.Replace(c)
	for _, want := range []string{"tenants.tenants.acme.max_qos", "tenants.tenants.acme.inbox_size"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Replace = %v, want an error naming %s", err, want)
		}
	}
	if p.Get("acme").MaxQoS != 2 {
		t.Error("a refused Replace changed the settings")
	}
}
