//go:build !linux

package server

import (
	"errors"
	"net"
)

// parker parks idle connections without a goroutine on Linux only
// (parker_linux.go); elsewhere an idle connection keeps its parked reader.
type parker struct{}

func newParker() (*parker, error)      { return nil, errors.ErrUnsupported }
func (p *parker) add(*connection) bool { return false }
func (p *parker) remove(*connection)   {}
func (p *parker) run()                 {}
func (p *parker) close()               {}
func (p *parker) reading(*connection)  {}

// Connections are never detached here: acceptBare accepts nothing.
func (s *Server) acceptBare(net.Listener, *ListenerConfig) bool { return false }
func (cn *connection) readBare(int)                             {}
func (cn *connection) closeDetached()                           {}
func (cn *connection) keepAliveBare()                           {}
func closeFD(int)                                               {}

func (p *parker) writeDetached(*connection, []byte) (int, error) { return 0, errors.ErrUnsupported }
