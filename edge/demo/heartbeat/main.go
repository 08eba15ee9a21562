// Command heartbeat is the app of the edge demo and of the end-to-end
// test: it writes "PID ARGS COUNT" to the file heartbeat in its working
// directory every 200 ms (and a line to its output every few seconds),
// and exits cleanly on SIGTERM. Whoever reads the file sees which
// revision runs and that it is alive.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	args := strings.Join(os.Args[1:], " ")
	fmt.Printf("heartbeat %d starting: %s (app %s, node %s)\n", os.Getpid(), args, os.Getenv("SKYBRIDGE_APP"), os.Getenv("SKYBRIDGE_NODE"))
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		line := fmt.Sprintf("%d %s %d\n", os.Getpid(), args, n)
		if err := os.WriteFile("heartbeat.tmp", []byte(line), 0o644); err == nil {
			_ = os.Rename("heartbeat.tmp", "heartbeat")
		}
		if n%25 == 0 {
			fmt.Print(line)
		}
		select {
		case <-stop:
			fmt.Println("heartbeat stopping")
			return
		case <-t.C:
		}
	}
}
