// Command skybridge-kv runs raftkv (impl/raftkv), the range-sharded,
// replicated key-value store, without the broker:
//
//	skybridge-kv serve --id 1 --dir data/1 --listen 127.0.0.1:7001 --client 127.0.0.1:7101 \
//	    --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//	skybridge-kv put|get|delete|scan|declare-dead --addrs 127.0.0.1:7101,... ARGS
//	skybridge-kv load --addrs ... --duration 10s       # write load, then every acknowledged write read back
//	skybridge-kv demo                                  # 3 processes on loopback, kill -9 of one under load
//	skybridge-kv sim --seed 7 --nodes 5                # one simulated run (sim/kvsim); --seeds N for a sweep
//
// docs/RAFTKV.md describes the store, its guarantees and how to replay a
// simulator seed.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"serve": serve, "sim": simulate, "load": load, "demo": demo,
		"put": clientCmd("put"), "get": clientCmd("get"), "delete": clientCmd("delete"),
		"scan": clientCmd("scan"), "declare-dead": clientCmd("declare-dead"),
	}
	f, ok := cmds[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "skybridge-kv:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: skybridge-kv COMMAND [flags]
  serve         run a node
  put|get|delete|scan|declare-dead   one request to a cluster
  load          write load against a cluster, then read every acknowledged write back
  demo          a 3-process cluster on loopback survives kill -9 of one node under load
  sim           the deterministic simulator: one seed (--seed) or a sweep (--seeds)
Each command takes -h.
`)
}
