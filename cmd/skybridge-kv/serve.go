package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	id := fs.Uint64("id", 0, "this node's ID (> 0)")
	dir := fs.String("dir", "", "data directory")
	listen := fs.String("listen", "127.0.0.1:7001", "address for the other nodes")
	client := fs.String("client", "127.0.0.1:7101", "address for clients")
	peers := fs.String("peers", "", "the initial cluster, or whom a joining node asks: id=host:port,...")
	join := fs.Bool("join", false, "join a running cluster (the store starts empty)")
	replicas := fs.Int("replicas", 3, "voters per range")
	tick := fs.Duration("tick", 100*time.Millisecond, "raft tick")
	tlsCert := fs.String("tls-cert", "", "node certificate (PEM) for mutual TLS between nodes; it must name this node (URI raftkv://node/<id>)")
	tlsKey := fs.String("tls-key", "", "its key")
	tlsCA := fs.String("tls-ca", "", "the CA that signs every node's certificate")
	clientTLSCert := fs.String("client-tls-cert", "", "certificate (PEM) of the client port: TLS for clients (default: plain TCP)")
	clientTLSKey := fs.String("client-tls-key", "", "its key")
	clientTLSCA := fs.String("client-tls-ca", "", "require client certificates signed by this CA (default: any client)")
	listenFD := fs.Int("listen-fd", 0, "use this inherited file descriptor as the node listener (tests)")
	clientFD := fs.Int("client-fd", 0, "use this inherited file descriptor as the client listener (tests)")
	deadAfter := fs.Duration("dead-after", 0, "declare a node dead after this long unheard (0: only by declare-dead)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here until the node stops")
	cacheMB := fs.Int64("cache-mb", 64, "Pebble block cache, MiB")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *id == 0 || *dir == "" || *peers == "" {
		return errors.New("serve needs --id, --dir and --peers")
	}
	addrs, ids, err := raftkv.ParsePeers(strings.Split(*peers, ","))
	if err != nil {
		return err
	}
	cfg := kvserver.Config{
		Node: raftkv.Config{ID: raftkv.NodeID(*id), Dir: *dir, Peers: ids, Join: *join, Replicas: *replicas,
			DeadAfterTicks: int(*deadAfter / *tick), CacheBytes: *cacheMB << 20},
		PeerAddrs: addrs, Listen: *listen, ClientListen: *client, Tick: *tick,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if *listenFD > 0 {
		if cfg.PeerListener, err = inherited(*listenFD); err != nil {
			return err
		}
		cfg.Node.Addr = addrs[raftkv.NodeID(*id)]
	}
	if *clientFD > 0 {
		if cfg.ClientListener, err = inherited(*clientFD); err != nil {
			return err
		}
	}
	if *tlsCert != "" {
		if cfg.PeerTLS, err = kvserver.LoadTLS(raftkv.NodeID(*id), *tlsCert, *tlsKey, *tlsCA); err != nil {
			return err
		}
	}
	switch {
	case *clientTLSCert != "":
		if cfg.ClientTLS, err = kvserver.LoadClientTLS(*clientTLSCert, *clientTLSKey, *clientTLSCA); err != nil {
			return err
		}
	case *clientTLSKey != "" || *clientTLSCA != "":
		return errors.New("--client-tls-key and --client-tls-ca need --client-tls-cert")
	}
	s, err := kvserver.New(cfg)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; s.Close() }()
	fmt.Printf("ready node=%d peers=%s clients=%s\n", *id, s.Addr(), s.ClientAddr())
	return s.Run()
}

func inherited(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}
