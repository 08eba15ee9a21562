//go:build !unix

package server

// rawReadSupported is false where frameReader cannot read a descriptor
// itself: it reads through net.Conn.Read.
const rawReadSupported = false

func (f *frameReader) rawRead(fd uintptr) bool { panic("server: raw reads are not supported here") }

func (f *frameReader) rawWrite(fd uintptr) bool { panic("server: raw writes are not supported here") }
