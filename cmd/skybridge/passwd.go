package main

import (
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/auth"
	"github.com/skybridge-mq/skybridge/impl/console"
)

// passwd prints password-file lines for a user: a bcrypt line, and with
// --scram a SCRAM-SHA-256 line too. The password is read from stdin (one
// line), never from the command line.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: skybridge passwd [--scram] [--cost N] TENANT/USER < password")
		fmt.Fprintln(fs.Output(), "       skybridge passwd --console [--cost N] USER < password   (a line of admin.console_users_file)")
		fs.PrintDefaults()
	}
	scram := fs.Bool("scram", false, "also print SCRAM-SHA-256 credentials (for auth.scram)")
	forConsole := fs.Bool("console", false, "print a line of the web console's users file (USER, no tenant)")
	cost := fs.Int("cost", 0, "bcrypt cost (default 10)")
	if helpRequested(args) {
		printHelp(fs, stdout)
		return nil
	}
	a, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(a) != 1 {
		return errors.New("usage: skybridge passwd [--scram] [--cost N] TENANT/USER < password")
	}
	pw, err := auth.ReadPassword(stdin)
	if err != nil {
		return err
	}
	if *forConsole {
		l, err := console.UserLine(a[0], pw, *cost)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, l)
		return nil
	}
	tenant, user, ok := strings.Cut(a[0], "/")
	if !ok {
		return fmt.Errorf("%q: want TENANT/USER", a[0])
	}
	hash, err := auth.HashPassword(pw, *cost)
	if err != nil {
		return err
	}
	l, err := auth.Line(tenant, user, hash)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, l)
	if *scram {
		c, err := auth.NewCredentials(crand.Reader, pw, 0)
		if err != nil {
			return err
		}
		l, err := auth.Line(tenant, user, []byte(c.String()))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, l)
	}
	return nil
}
