// Package modbustest runs a Modbus TCP server for tests: a bank of
// registers and bits in memory, served by github.com/simonvetter/modbus's
// server on a random loopback port, that tests set and read. It is test
// infrastructure with the runtime's freedoms (a listener, the library's
// goroutines), listed with edge/modbustcp in impl/env's purity check.
package modbustest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"syscall"

	"github.com/simonvetter/modbus"
)

// Server is a running Modbus TCP server. Addresses never set read as
// zero; reads and writes are counted, reads also per unit.
type Server struct {
	srv  *modbus.ModbusServer
	addr string
	mu   sync.Mutex
	// keyed by unit and address
	holding, input map[uint32]uint16
	coils, disc    map[uint32]bool
	reads, writes  int
	unitReads      [256]int
	refuse         map[uint32]bool // holding addresses whose writes are refused
}

func key(unit uint8, addr uint16) uint32 { return uint32(unit)<<16 | uint32(addr) }

// Start serves on a random port of 127.0.0.1 with room for maxClients
// connections. The library binds the address it is given, so a free port
// is chosen first and the bind retried if another process took it.
func Start(maxClients int) (*Server, error) {
	var err error
	for range 20 {
		var ln net.Listener
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		var s *Server
		if s, err = StartAt(addr, maxClients); err == nil {
			return s, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, fmt.Errorf("modbustest: no free port: %w", err)
}

// StartAt serves on addr (a server restarted where it was).
func StartAt(addr string, maxClients int) (*Server, error) {
	s := &Server{holding: map[uint32]uint16{}, input: map[uint32]uint16{}, coils: map[uint32]bool{}, disc: map[uint32]bool{}, refuse: map[uint32]bool{}}
	var err error
	s.srv, err = modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + addr, MaxClients: uint(maxClients),
		Logger: log.New(io.Discard, "", 0)}, s)
	if err != nil {
		return nil, err
	}
	if err := s.srv.Start(); err != nil {
		return nil, err
	}
	s.addr = addr
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Stop closes the server and its connections.
func (s *Server) Stop() { _ = s.srv.Stop() }

// SetHolding sets holding registers of a unit from addr on.
func (s *Server) SetHolding(unit uint8, addr uint16, v ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range v {
		s.holding[key(unit, addr+uint16(i))] = x
	}
}

// SetInput sets input registers of a unit from addr on.
func (s *Server) SetInput(unit uint8, addr uint16, v ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range v {
		s.input[key(unit, addr+uint16(i))] = x
	}
}

// SetCoil sets a coil.
func (s *Server) SetCoil(unit uint8, addr uint16, v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.coils[key(unit, addr)] = v
}

// Holding returns a holding register.
func (s *Server) Holding(unit uint8, addr uint16) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding[key(unit, addr)]
}

// Coil returns a coil.
func (s *Server) Coil(unit uint8, addr uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coils[key(unit, addr)]
}

// RefuseWrites makes writes of a holding register fail with "illegal
// data value".
func (s *Server) RefuseWrites(unit uint8, addr uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[key(unit, addr)] = true
}

// Counts returns the requests served.
func (s *Server) Counts() (reads, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, s.writes
}

// UnitReads returns the read requests served for one unit id (one
// device, where each client polls its own unit).
func (s *Server) UnitReads(unit uint8) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unitReads[unit]
}

// countRead counts a read of unit; the caller holds s.mu.
func (s *Server) countRead(unit uint8) {
	s.reads++
	s.unitReads[unit]++
}

// HandleCoils implements modbus.RequestHandler.
func (s *Server) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.IsWrite {
		s.writes++
		for i, v := range req.Args {
			s.coils[key(req.UnitId, req.Addr+uint16(i))] = v
		}
		return nil, nil
	}
	s.countRead(req.UnitId)
	out := make([]bool, req.Quantity)
	for i := range out {
		out[i] = s.coils[key(req.UnitId, req.Addr+uint16(i))]
	}
	return out, nil
}

// HandleDiscreteInputs implements modbus.RequestHandler.
func (s *Server) HandleDiscreteInputs(req *modbus.DiscreteInputsRequest) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countRead(req.UnitId)
	out := make([]bool, req.Quantity)
	for i := range out {
		out[i] = s.disc[key(req.UnitId, req.Addr+uint16(i))]
	}
	return out, nil
}

// HandleHoldingRegisters implements modbus.RequestHandler.
func (s *Server) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.IsWrite {
		for i := range req.Args {
			if s.refuse[key(req.UnitId, req.Addr+uint16(i))] {
				return nil, modbus.ErrIllegalDataValue
			}
		}
		s.writes++
		for i, v := range req.Args {
			s.holding[key(req.UnitId, req.Addr+uint16(i))] = v
		}
		return nil, nil
	}
	s.countRead(req.UnitId)
	out := make([]uint16, req.Quantity)
	for i := range out {
		out[i] = s.holding[key(req.UnitId, req.Addr+uint16(i))]
	}
	return out, nil
}

// HandleInputRegisters implements modbus.RequestHandler; addresses from
// 60000 on are refused ("illegal data address"), to test refusals.
func (s *Server) HandleInputRegisters(req *modbus.InputRegistersRequest) ([]uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countRead(req.UnitId)
	if int(req.Addr)+int(req.Quantity) > 60000 {
		return nil, modbus.ErrIllegalDataAddress
	}
	out := make([]uint16, req.Quantity)
	for i := range out {
		out[i] = s.input[key(req.UnitId, req.Addr+uint16(i))]
	}
	return out, nil
}
