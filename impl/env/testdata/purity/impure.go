package impure

import (
	crand "crypto/rand"
	"math/rand"
	r2 "math/rand/v2"
	"net"
	"os"
	"time"
)

func bad() {
	_ = time.Now()               // want
	time.Sleep(time.Second)      // want
	<-time.After(time.Second)    // want
	_ = time.NewTimer(1)         // want
	_ = time.NewTicker(1)        // want
	_ = time.Since(time.Time{})  // want
	_ = rand.Intn(3)             // want
	_ = r2.IntN(3)               // want
	_, _ = crand.Read(nil)       // want
	_, _ = os.ReadFile("x")      // want
	_, _ = os.Create("x")        // want
	_, _ = net.Dial("tcp", "")   // want
	_, _ = net.Listen("tcp", "") // want
	go bad()                     // want
}

func good(clock interface{ Now() time.Time }, d time.Duration) {
	_ = clock.Now()
	_ = time.Unix(0, 0).Add(d)
	_ = r2.New(r2.NewPCG(1, 2))
	var _ net.Conn
	_ = os.ErrNotExist
	_ = time.Duration(3) * time.Second
}
