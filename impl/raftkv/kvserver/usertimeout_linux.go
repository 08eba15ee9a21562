package kvserver

import "syscall"

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (18 on every
// architecture; the syscall package names it on some only).
const tcpUserTimeout = 0x12

// setUserTimeout makes the kernel close the socket once data it sent has
// gone unacknowledged for ms milliseconds (called before connect, by the
// dialer's Control).
func setUserTimeout(c syscall.RawConn, ms int) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms)
	}); cerr != nil {
		return cerr
	}
	return err
}
