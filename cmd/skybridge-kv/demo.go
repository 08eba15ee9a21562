package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvclient"
	"github.com/skybridge-mq/skybridge/impl/raftkv/kvserver"
)

// cluster is a set of skybridge-kv serve processes on loopback, each in
// its own process group; it ends only the processes it started, by group.
type cluster struct {
	bin     string
	dir     string
	peers   []string // node-to-node addresses, index = ID-1
	clients []string // client addresses
	procs   []*exec.Cmd
	tls     bool
	client  *tls.Config // TLS to the client ports (nil: plain TCP)
	log     func(string, ...any)
}

func newCluster(bin, dir string, n int, useTLS bool, logf func(string, ...any)) (*cluster, error) {
	c := &cluster{bin: bin, dir: dir, procs: make([]*exec.Cmd, n), tls: useTLS, log: logf}
	if useTLS {
		var ids []raftkv.NodeID
		for i := 1; i <= n; i++ {
			ids = append(ids, raftkv.NodeID(i))
		}
		if err := kvserver.WriteTestCerts(dir, ids...); err != nil {
			return nil, err
		}
		var err error
		if c.client, err = kvclient.LoadTLS(filepath.Join(dir, "ca.pem"), "", "", kvserver.TLSServerName); err != nil {
			return nil, err
		}
	}
	for range n {
		for _, l := range []*[]string{&c.peers, &c.clients} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			*l = append(*l, ln.Addr().String())
			ln.Close()
		}
	}
	return c, nil
}

// start starts node i (1-based) on its addresses: the parent listens and
// hands the sockets down, so the child never races another process for
// its port.
func (c *cluster) start(i int) error {
	var files []*os.File
	for _, addr := range []string{c.peers[i-1], c.clients[i-1]} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			return err
		}
		defer f.Close()
		files = append(files, f)
	}
	var peers []string
	for j, a := range c.peers {
		peers = append(peers, fmt.Sprintf("%d=%s", j+1, a))
	}
	args := []string{"serve", "--id", fmt.Sprint(i), "--dir", filepath.Join(c.dir, fmt.Sprint(i)),
		"--peers", strings.Join(peers, ","), "--listen-fd", "3", "--client-fd", "4"}
	if c.tls {
		cert, key := filepath.Join(c.dir, fmt.Sprintf("node-%d.pem", i)), filepath.Join(c.dir, fmt.Sprintf("node-%d-key.pem", i))
		args = append(args, "--tls-cert", cert, "--tls-key", key, "--tls-ca", filepath.Join(c.dir, "ca.pem"),
			"--client-tls-cert", cert, "--client-tls-key", key)
	}
	out, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("n%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(c.bin, args...)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs[i-1] = cmd
	c.log("started n%d (pid %d)", i, cmd.Process.Pid)
	return nil
}

// kill sends SIGKILL to node i's process group and reaps it.
func (c *cluster) kill(i int) {
	cmd := c.procs[i-1]
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	c.procs[i-1] = nil
	c.log("killed n%d (kill -9 of process group %d)", i, cmd.Process.Pid)
}

// stop ends every process it started: SIGTERM to each group, SIGKILL to
// what is left after a grace period.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for i, cmd := range c.procs {
		if cmd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}()
		c.procs[i] = nil
	}
	wg.Wait()
}

// ready waits until a write through every node succeeds.
func (c *cluster) ready(ctx context.Context) error {
	for i, a := range c.clients {
		if c.procs[i] == nil {
			continue
		}
		cl := kvclient.New([]string{a}, c.client)
		for {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			err := cl.Put(rctx, []byte("ready"), []byte(a))
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				cl.Close()
				return fmt.Errorf("n%d not serving: %w", i+1, err)
			}
			time.Sleep(50 * time.Millisecond) // polling a process we started, with a deadline (ctx)
		}
		cl.Close()
	}
	return nil
}

// demoReport is what the kill -9 run measured.
type demoReport struct {
	load   *loadResult
	after  *loadResult
	victim int
}

// runDemo: three processes on loopback with mutual TLS between nodes (each
// node on its own certificate) and TLS on the client ports, a write load, kill
// -9 of one node a third of the way in, its restart another third later;
// every acknowledged write is read back, and the cluster still serves
// writes and reads afterwards.
func runDemo(ctx context.Context, bin, dir string, duration time.Duration, workers, batch int, kill bool, logf func(string, ...any)) (*demoReport, error) {
	c, err := newCluster(bin, dir, 3, true, logf)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	for i := 1; i <= 3; i++ {
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = c.ready(rctx)
	cancel()
	if err != nil {
		return nil, err
	}
	rep := &demoReport{victim: 2}
	var killErr error
	schedule := func(d time.Duration) {
		time.Sleep(d / 3) // the load runs meanwhile; this is the schedule of the fault
		c.kill(rep.victim)
		time.Sleep(d / 3)
		killErr = c.start(rep.victim)
	}
	if !kill {
		schedule, rep.victim = nil, 0
	}
	rep.load, err = runLoad(ctx, loadOpts{addrs: c.clients, tls: c.client, duration: duration, workers: workers, conns: 3, batch: batch, prefix: "demo/"}, schedule)
	if err != nil {
		return rep, err
	}
	if killErr != nil {
		return rep, killErr
	}
	// The restarted node serves again, and the cluster takes more writes.
	rctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	err = c.ready(rctx)
	cancel()
	if err != nil {
		return rep, err
	}
	rep.after, err = runLoad(ctx, loadOpts{addrs: c.clients, tls: c.client, duration: 2 * time.Second, workers: 8, conns: 3, batch: 1, prefix: "after/"}, nil)
	return rep, err
}

func demo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	dir := fs.String("dir", "", "data directory (default: a new temporary one, removed after)")
	duration := fs.Duration("duration", 15*time.Second, "write load")
	workers := fs.Int("workers", 32, "concurrent writers")
	batch := fs.Int("batch", 1, "puts per request")
	kill := fs.Bool("kill", true, "kill -9 a node a third of the way in, restart it a third later")
	fs.Parse(args)
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "skybridge-kv-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	logf := func(f string, a ...any) {
		fmt.Printf("%s  "+f+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
	rep, err := runDemo(context.Background(), bin, *dir, *duration, *workers, *batch, *kill, logf)
	if rep != nil && rep.load != nil {
		fmt.Printf("load (%d writers, %d puts per request, kill -9 of n%d): %s\n", *workers, *batch, rep.victim, rep.load)
	}
	if rep != nil && rep.after != nil {
		fmt.Println("after the restart:", rep.after)
	}
	if err != nil {
		return err
	}
	if n := len(rep.load.lost) + len(rep.load.wrong) + len(rep.after.lost) + len(rep.after.wrong); n > 0 {
		return fmt.Errorf("%d acknowledged writes missing or wrong", n)
	}
	if rep.after.acked == 0 {
		return errors.New("no write succeeded after the restart")
	}
	fmt.Println("no acknowledged write lost")
	return nil
}
