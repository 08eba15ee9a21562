//go:build !linux

package kvserver

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not known: a peer
// connection that stalls is then found by the write timeout alone.
func setUserTimeout(syscall.RawConn, int) error { return nil }
