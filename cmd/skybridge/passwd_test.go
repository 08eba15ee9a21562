package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/skybridge-mq/skybridge/impl/console"
)

// skybridge passwd --console prints a line of the console's users file.
func TestPasswdConsoleLine(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if err := passwd([]string{"--console", "--cost", "4", "ops"}, strings.NewReader("hunter2\n"), &out, &errOut); err != nil {
		t.Fatalf("passwd --console: %v (%s)", err, errOut.String())
	}
	users, err := console.ParseUsers(out.Bytes())
	if err != nil {
		t.Fatalf("the line %q is not a users file: %v", out.String(), err)
	}
	if bcrypt.CompareHashAndPassword(users["ops"], []byte("hunter2")) != nil {
		t.Fatalf("the hash of %q does not match the password", out.String())
	}
	if err := passwd([]string{"--console", "a:b"}, strings.NewReader("x\n"), &out, &errOut); err == nil {
		t.Error("a user name with ':' was accepted")
	}
}
