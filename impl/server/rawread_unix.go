//go:build unix

package server

import "syscall"

// rawReadSupported says that frameReader may read a socket's descriptor
// itself (see reader.go).
const rawReadSupported = true

// rawRead is the callback of syscall.RawConn.Read: it reads once, and when
// the socket has nothing (the read would block) it gives back the read
// buffer if nothing is buffered, then lets the runtime wait for the socket,
// or, at a packet boundary on a connection that may park, returns errPark.
func (f *frameReader) rawRead(fd uintptr) bool {
	if f.writing {
		return f.rawWrite(fd)
	}
	for {
		dst := f.dst
		if dst == nil {
			if f.bufp == nil {
				f.acquire()
			}
			dst = f.buf()[f.w:]
		}
		n, err := syscall.Read(int(fd), dst)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			f.letGo()
			if f.r == f.w && f.boundary && f.parkOK {
				f.n, f.errno, f.parked = 0, 0, true
				return true
			}
			return false
		}
		f.n, f.errno = int32(max(n, 0)), errnoOf(err)
		return true
	}
}

// errnoOf returns err, an error of a system call, as its number.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}

// rawWrite is rawRead's part for writeNow: one write of f.dst, which never
// waits (a full socket takes nothing).
func (f *frameReader) rawWrite(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), f.dst)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			n, err = 0, nil
		}
		f.n, f.errno = int32(max(n, 0)), errnoOf(err)
		return true
	}
}
