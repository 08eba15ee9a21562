package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/console"
)

// skybridge-cloud passwd prints a line of serve --console-users.
func TestPasswdLine(t *testing.T) {
	var out bytes.Buffer
	if err := passwd([]string{"ops"}, strings.NewReader("hunter2\n"), &out); err != nil {
		t.Fatal(err)
	}
	users, err := console.ParseUsers(out.Bytes())
	if err != nil || bcrypt.CompareHashAndPassword(users["ops"], []byte("hunter2")) != nil {
		t.Fatalf("line %q: %v", out.String(), err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
	}{
		{[]string{"a:b"}, "x\n"}, {[]string{"ops"}, "\n"}, {nil, "x\n"}, {[]string{"--help"}, "x\n"},
	} {
		if err := passwd(c.args, strings.NewReader(c.stdin), &out); err == nil {
			t.Errorf("passwd %q with %q: no error", c.args, c.stdin)
		}
	}
}
