package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/skybridge-mq/skybridge/impl/config"
)

// Flags may come before or after a command's arguments ("skybridge ctl
// sessions acme --admin URL" as well as "skybridge ctl --admin URL
// sessions acme"); "--" ends the flags, so that an argument may start with
// a dash. -h and --help anywhere before "--" print the command's usage on
// standard output and succeed.

// parseArgs parses fs's flags wherever they are among args and returns the
// other arguments, in order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return append(pos, rest...), nil
}

// helpRequested reports whether args ask for help before any "--".
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// printHelp writes fs's usage to w.
func printHelp(fs *flag.FlagSet, w io.Writer) {
	fs.SetOutput(w)
	fs.Usage()
}

// listenFlag collects the --listen overrides, in order.
type listenFlag []string

func (l *listenFlag) String() string { return strings.Join(*l, ",") }

func (l *listenFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// applyListen applies --listen overrides then -p to the listeners:
//
//	--listen NAME=HOST:PORT  moves the listener NAME, keeps the others
//	--listen HOST:PORT       replaces every listener with one TCP listener "tcp"
//	-p PORT                  the port of the TCP listener "tcp" (else of the first
//	                         tcp listener; else a new one on 127.0.0.1), its host kept
func applyListen(f *config.File, listen []string, port string) error {
	for _, v := range listen {
		name, addr, named := strings.Cut(v, "=")
		if !named {
			f.Listeners = []config.Listener{{Name: "tcp", Type: "tcp", Addr: v}}
			continue
		}
		i := slices.IndexFunc(f.Listeners, func(l config.Listener) bool { return l.Name == name })
		if i < 0 {
			var names []string
			for _, l := range f.Listeners {
				names = append(names, l.Name)
			}
			return fmt.Errorf("--listen %s: no listener %q (the listeners are %s)", v, name, strings.Join(names, ", "))
		}
		f.Listeners[i].Addr = addr
	}
	if port == "" {
		return nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("-p %q: want a port number (0 to 65535)", port)
	}
	i := slices.IndexFunc(f.Listeners, func(l config.Listener) bool { return l.Name == "tcp" && l.Type == "tcp" })
	if i < 0 {
		i = slices.IndexFunc(f.Listeners, func(l config.Listener) bool { return l.Type == "tcp" })
	}
	if i < 0 {
		f.Listeners = append(f.Listeners, config.Listener{Name: "tcp", Type: "tcp", Addr: net.JoinHostPort("127.0.0.1", port)})
		return nil
	}
	host, _, err := net.SplitHostPort(f.Listeners[i].Addr)
	if err != nil {
		return fmt.Errorf("-p %s: listener %q has no host:port address (%q)", port, f.Listeners[i].Name, f.Listeners[i].Addr)
	}
	f.Listeners[i].Addr = net.JoinHostPort(host, port)
	return nil
}
