package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
)

// clientCmd is one request: put KEY VALUE, get KEY, delete KEY,
// scan START [END], declare-dead NODE.
func clientCmd(name string) func([]string) error {
	return func(args []string) error {
		fs := flag.NewFlagSet(name, flag.ExitOnError)
		addrs := fs.String("addrs", "127.0.0.1:7101", "client addresses of nodes, comma-separated")
		timeout := fs.Duration("timeout", 10*time.Second, "give up after")
		tlsFlags := addClientTLSFlags(fs)
		fs.Parse(args)
		a := fs.Args()
		tc, err := tlsFlags.config()
		if err != nil {
			return err
		}
		c := kvclient.New(strings.Split(*addrs, ","), tc)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		need := map[string]int{"put": 2, "get": 1, "delete": 1, "scan": 1, "declare-dead": 1}[name]
		if len(a) < need {
			return fmt.Errorf("%s needs %d arguments", name, need)
		}
		switch name {
		case "put":
			return c.Put(ctx, []byte(a[0]), []byte(a[1]))
		case "delete":
			return c.Delete(ctx, []byte(a[0]))
		case "get":
			v, ok, err := c.Get(ctx, []byte(a[0]))
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("not found")
			}
			fmt.Printf("%s\n", v)
		case "scan":
			var end []byte
			if len(a) > 1 {
				end = []byte(a[1])
			}
			for k := []byte(a[0]); k != nil; {
				kvs, resume, err := c.Scan(ctx, k, end, 0)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					fmt.Printf("%s\t%s\n", kv.Key, kv.Value)
				}
				k = resume
			}
		case "declare-dead":
			n, err := strconv.ParseUint(a[0], 10, 64)
			if err != nil {
				return err
			}
			return c.DeclareDead(ctx, raftkv.NodeID(n))
		}
		return nil
	}
}

// clientTLSFlags are the flags of a client of a TLS client port.
type clientTLSFlags struct{ ca, cert, key, serverName *string }

func addClientTLSFlags(fs *flag.FlagSet) clientTLSFlags {
	return clientTLSFlags{
		ca:         fs.String("tls-ca", "", "TLS to the client port: verify the server against this CA (default: plain TCP)"),
		cert:       fs.String("tls-cert", "", "client certificate (PEM), for a port that requires one"),
		key:        fs.String("tls-key", "", "its key"),
		serverName: fs.String("tls-server-name", "", "the name the server's certificate must carry (default: the host of the address)"),
	}
}

// config returns the TLS configuration the flags ask for (nil: plain TCP).
func (f clientTLSFlags) config() (*tls.Config, error) {
	if *f.ca == "" {
		if *f.cert != "" || *f.key != "" || *f.serverName != "" {
			return nil, errors.New("--tls-cert, --tls-key and --tls-server-name need --tls-ca")
		}
		return nil, nil
	}
	return kvclient.LoadTLS(*f.ca, *f.cert, *f.key, *f.serverName)
}
