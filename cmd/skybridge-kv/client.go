package main

import (
	"context"
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
		fs.Parse(args)
		a := fs.Args()
		c := kvclient.New(strings.Split(*addrs, ","), nil)
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
