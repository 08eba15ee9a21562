package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/console"
)

// passwd prints a line of the web console's users file (serve
// --console-users) for USER, the password read from stdin (one line),
// never from the command line.
func passwd(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: skybridge-cloud passwd USER < password")
	}
	pw, err := auth.ReadPassword(stdin)
	if err != nil {
		return err
	}
	l, err := console.UserLine(args[0], pw, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, l)
	return err
}
