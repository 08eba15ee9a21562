// Package modbustcp is the device gateway's Modbus TCP runtime: it carries
// out the operations of the gateway core (edge/gateway) on real devices
// with github.com/simonvetter/modbus, one connection per device, opened on
// the first operation and again after a failure.
//
// A fixed pool of workers takes operations from a bounded queue: Submit
// never blocks, and an operation that finds the queue full is answered at
// once as failed (and counted), so a slow network can never grow memory
// or goroutines. The core keeps one operation in flight per device, so
// operations of one device never run concurrently.
package modbustcp

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/simonvetter/modbus"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/edge/gateway"
)

// Config configures a Driver.
type Config struct {
	// Workers run operations (default 8); Queue bounds the operations
	// waiting for one (default 1024).
	Workers, Queue int
	// Done receives each operation's answer (from a worker goroutine).
	Done   func(op gateway.Op, res []gateway.ReadResult, err error)
	Logger *slog.Logger
}

// ErrQueueFull answers an operation submitted while the queue was full.
var ErrQueueFull = errors.New("the gateway's Modbus queue is full")

// Stats count what the driver did.
type Stats struct {
	Dials, DialFailures, Dropped uint64
}

// Driver runs Modbus operations.
type Driver struct {
	cfg     Config
	jobs    chan gateway.Op
	mu      sync.Mutex
	clients map[string]*conn // by device
	wg      sync.WaitGroup
	closed  chan struct{}
	once    sync.Once
	dials   atomic.Uint64
	dialErr atomic.Uint64
	dropped atomic.Uint64
}

type conn struct {
	mu   sync.Mutex // one operation at a time (the core's rule, kept here too)
	ep   api.ModbusEndpoint
	c    *modbus.ModbusClient
	open bool
	gone bool // Close was asked: the next operation makes a new conn
}

// quiet silences the library's own logger (errors come back to the core).
var quiet = log.New(io.Discard, "", 0)

// New starts a driver's workers.
func New(cfg Config) *Driver {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Driver{cfg: cfg, jobs: make(chan gateway.Op, cfg.Queue), clients: map[string]*conn{}, closed: make(chan struct{})}
	d.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go d.work()
	}
	return d
}

// Submit queues an operation; a full queue answers it at once with
// ErrQueueFull.
func (d *Driver) Submit(op gateway.Op) {
	select {
	case <-d.closed:
		return
	default:
	}
	select {
	case d.jobs <- op:
	default:
		d.dropped.Add(1)
		d.cfg.Done(op, nil, ErrQueueFull)
	}
}

// Stats returns the counters.
func (d *Driver) Stats() Stats {
	return Stats{Dials: d.dials.Load(), DialFailures: d.dialErr.Load(), Dropped: d.dropped.Load()}
}

// Close drops a device's connection.
func (d *Driver) Close(device string) {
	d.mu.Lock()
	c := d.clients[device]
	delete(d.clients, device)
	d.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.gone = true
		c.drop()
		c.mu.Unlock()
	}
}

// Shutdown stops the workers (operations still queued are not run) and
// closes every connection.
func (d *Driver) Shutdown() {
	d.once.Do(func() {
		close(d.closed)
		d.wg.Wait()
		d.mu.Lock()
		for _, c := range d.clients {
			c.mu.Lock()
			c.drop()
			c.mu.Unlock()
		}
		d.clients = map[string]*conn{}
		d.mu.Unlock()
	})
}

func (d *Driver) work() {
	defer d.wg.Done()
	for {
		select {
		case <-d.closed:
			return
		case op := <-d.jobs:
			res, err := d.run(op)
			d.cfg.Done(op, res, err)
		}
	}
}

// connFor returns the device's connection, a new one if its endpoint
// changed.
func (d *Driver) connFor(op gateway.Op) *conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.clients[op.Device]
	if c == nil || c.ep != op.Endpoint {
		if c != nil {
			go func() { c.mu.Lock(); c.drop(); c.mu.Unlock() }() // it may be busy: never wait for it here
		}
		c = &conn{ep: op.Endpoint}
		d.clients[op.Device] = c
	}
	return c
}

func (c *conn) drop() {
	if c.c != nil && c.open {
		_ = c.c.Close()
	}
	c.open = false
}

func (d *Driver) run(op gateway.Op) ([]gateway.ReadResult, error) {
	c := d.connFor(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return nil, errors.New("device removed")
	}
	if !c.open {
		d.dials.Add(1)
		mc, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + op.Endpoint.Address, Timeout: op.Endpoint.Timeout.D(), Logger: quiet})
		if err == nil {
			err = mc.Open()
		}
		if err == nil {
			err = mc.SetUnitId(op.Endpoint.Unit)
		}
		if err != nil {
			d.dialErr.Add(1)
			return nil, fmt.Errorf("connect %s: %w", op.Endpoint.Address, err)
		}
		c.c, c.open = mc, true
	}
	if op.Write != nil {
		err := write(c.c, op.Write)
		return nil, c.settle(err)
	}
	res := make([]gateway.ReadResult, len(op.Reads))
	for i, r := range op.Reads {
		var err error
		switch r.Table {
		case api.TableHolding:
			res[i].Registers, err = c.c.ReadRegisters(r.Address, r.Count, modbus.HOLDING_REGISTER)
		case api.TableInput:
			res[i].Registers, err = c.c.ReadRegisters(r.Address, r.Count, modbus.INPUT_REGISTER)
		case api.TableCoil:
			res[i].Bits, err = c.c.ReadCoils(r.Address, r.Count)
		case api.TableDiscrete:
			res[i].Bits, err = c.c.ReadDiscreteInputs(r.Address, r.Count)
		default:
			err = &gateway.Refused{Reason: "unknown table " + r.Table}
		}
		if err = c.settle(err); err != nil {
			var ref *gateway.Refused
			if !errors.As(err, &ref) {
				return nil, err // the connection failed: the poll failed
			}
			res[i] = gateway.ReadResult{Err: ref.Reason}
		}
	}
	return res, nil
}

func write(mc *modbus.ModbusClient, w *gateway.Write) error {
	switch {
	case w.Table == api.TableCoil:
		return mc.WriteCoil(w.Address, w.Bit)
	case w.Table == api.TableHolding && len(w.Registers) == 1:
		return mc.WriteRegister(w.Address, w.Registers[0]) // function 6: what single-register devices support
	case w.Table == api.TableHolding:
		return mc.WriteRegisters(w.Address, w.Registers)
	}
	return &gateway.Refused{Reason: "table " + w.Table + " cannot be written"}
}

// settle sorts an error: a Modbus exception is the device's refusal (the
// connection stays); anything else drops the connection, to be made
// again by the next operation.
func (c *conn) settle(err error) error {
	if err == nil {
		return nil
	}
	var ref *gateway.Refused
	if errors.As(err, &ref) {
		return err
	}
	var me modbus.Error
	if errors.As(err, &me) {
		switch me {
		case modbus.ErrIllegalFunction, modbus.ErrIllegalDataAddress, modbus.ErrIllegalDataValue,
			modbus.ErrServerDeviceFailure, modbus.ErrAcknowledge, modbus.ErrServerDeviceBusy,
			modbus.ErrMemoryParityError, modbus.ErrGWPathUnavailable, modbus.ErrGWTargetFailedToRespond:
			return &gateway.Refused{Reason: string(me)}
		}
	}
	c.drop()
	return err
}
