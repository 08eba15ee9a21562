package api

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Modbus tables: the four kinds of data a Modbus server holds.
const (
	TableHolding  = "holding"  // 16-bit registers, read and write
	TableInput    = "input"    // 16-bit registers, read only
	TableCoil     = "coil"     // bits, read and write
	TableDiscrete = "discrete" // bits, read only
)

// Raw types of a Modbus point: how its registers are read.
const (
	RawBool    = "bool" // a coil or discrete input, or a register (non-zero is true)
	RawInt16   = "int16"
	RawUint16  = "uint16"
	RawInt32   = "int32"
	RawUint32  = "uint32"
	RawInt64   = "int64"
	RawUint64  = "uint64"
	RawFloat32 = "float32"
	RawFloat64 = "float64"
	RawString  = "string" // Registers registers of ASCII, two bytes each; trailing NULs and spaces trimmed
)

// Byte and word orders.
const (
	BigEndian    = "big"    // the high byte of a register first (Modbus's own order)
	LittleEndian = "little" // the low byte first
	HighWord     = "high"   // the first register holds the most significant word
	LowWord      = "low"    // the first register holds the least significant word
)

// ModbusPoint maps a device property to a Modbus point: a register (or
// several, for 32- and 64-bit values and strings) or a bit. The property's
// value is raw·Scale + Offset; a desired value written back is
// (value − Offset)/Scale, rounded for the integer raw types.
type ModbusPoint struct {
	Table   string `json:"table"`
	Address uint16 `json:"address"`
	Type    string `json:"type"`
	// Registers is a string's length in registers (1 to 125).
	Registers int     `json:"registers,omitempty"`
	Scale     float64 `json:"scale,omitempty"` // default 1
	Offset    float64 `json:"offset,omitempty"`
	ByteOrder string  `json:"byte_order,omitempty"` // "big" (default) or "little"
	WordOrder string  `json:"word_order,omitempty"` // "high" (default) or "low"
}

// Count returns the number of registers (or bits) the point spans.
func (p *ModbusPoint) Count() int {
	switch p.Type {
	case RawInt32, RawUint32, RawFloat32:
		return 2
	case RawInt64, RawUint64, RawFloat64:
		return 4
	case RawString:
		return p.Registers
	}
	return 1
}

// IsBit reports whether the point is in a bit table.
func (p *ModbusPoint) IsBit() bool { return p.Table == TableCoil || p.Table == TableDiscrete }

// Writable reports whether the point's table can be written.
func (p *ModbusPoint) Writable() bool { return p.Table == TableHolding || p.Table == TableCoil }

// ScaleOr1 returns the scale, 1 when unset.
func (p *ModbusPoint) ScaleOr1() float64 {
	if p.Scale == 0 {
		return 1
	}
	return p.Scale
}

// Validate checks the point against the property it maps.
func (p *ModbusPoint) Validate(prop *Property) error {
	var errs []error
	switch p.Table {
	case TableHolding, TableInput, TableCoil, TableDiscrete:
	default:
		errs = append(errs, fmt.Errorf("table %q: holding, input, coil or discrete", p.Table))
	}
	switch p.Type {
	case RawBool:
	case RawInt16, RawUint16, RawInt32, RawUint32, RawInt64, RawUint64, RawFloat32, RawFloat64, RawString:
		if p.IsBit() {
			errs = append(errs, fmt.Errorf("type %q: a %s holds bits (type bool)", p.Type, p.Table))
		}
	default:
		errs = append(errs, fmt.Errorf("type %q: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string", p.Type))
	}
	if p.Type == RawString {
		if p.Registers < 1 || p.Registers > 125 {
			errs = append(errs, fmt.Errorf("registers %d: a string spans 1 to 125 registers", p.Registers))
		}
	} else if p.Registers != 0 {
		errs = append(errs, errors.New("registers: only for type string"))
	}
	if int(p.Address)+p.Count() > 1<<16 {
		errs = append(errs, fmt.Errorf("address %d: the point runs past the last address", p.Address))
	}
	if math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0) || math.IsNaN(p.Offset) || math.IsInf(p.Offset, 0) {
		errs = append(errs, errors.New("scale and offset: finite numbers"))
	}
	if (p.Scale != 0 && p.Scale != 1 || p.Offset != 0) && (p.Type == RawBool || p.Type == RawString) {
		errs = append(errs, fmt.Errorf("scale and offset: not for type %s", p.Type))
	}
	switch p.ByteOrder {
	case "", BigEndian, LittleEndian:
	default:
		errs = append(errs, fmt.Errorf("byte_order %q: big or little", p.ByteOrder))
	}
	switch p.WordOrder {
	case "", HighWord, LowWord:
	default:
		errs = append(errs, fmt.Errorf("word_order %q: high or low", p.WordOrder))
	}
	if prop != nil {
		ok := false
		switch prop.Type {
		case PropBool:
			ok = p.Type == RawBool
		case PropString:
			ok = p.Type == RawString
		case PropInt, PropFloat:
			ok = p.Type != RawBool && p.Type != RawString
		}
		if !ok {
			errs = append(errs, fmt.Errorf("type %s cannot carry a property of type %s", p.Type, prop.Type))
		}
		if prop.Writable && !p.Writable() {
			errs = append(errs, fmt.Errorf("a writable property needs a writable table (holding or coil), not %s", p.Table))
		}
	}
	return errors.Join(errs...)
}

// Modbus endpoint defaults.
const (
	DefaultModbusPoll        = 5 * time.Second
	DefaultModbusTimeout     = 2 * time.Second
	DefaultModbusReportEvery = 5 * time.Minute
)

// ModbusEndpoint says where a Modbus TCP device is and how the node's
// gateway polls it.
type ModbusEndpoint struct {
	// Address is the device's host:port (reached from the node).
	Address string `json:"address"`
	// Unit is the unit identifier of the requests (0 to 255; most TCP
	// devices ignore it, gateways to serial lines route by it).
	Unit uint8 `json:"unit,omitempty"`
	// Poll is the period of reads (default 5s), Timeout a request's bound
	// (default 2s).
	Poll    Duration `json:"poll,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
	// ReportEvery: values that did not change are reported again after
	// this long (default 5m); a change is reported at the poll that sees it.
	ReportEvery Duration `json:"report_every,omitempty"`
}

// WithDefaults returns e with its zero fields set to the defaults.
func (e ModbusEndpoint) WithDefaults() ModbusEndpoint {
	if e.Poll <= 0 {
		e.Poll = Duration(DefaultModbusPoll)
	}
	if e.Timeout <= 0 {
		e.Timeout = Duration(DefaultModbusTimeout)
	}
	if e.ReportEvery <= 0 {
		e.ReportEvery = Duration(DefaultModbusReportEvery)
	}
	return e
}

// Validate checks an endpoint.
func (e *ModbusEndpoint) Validate() error {
	var errs []error
	if e.Address == "" {
		errs = append(errs, errors.New("address: host:port of the device"))
	} else if err := validHostPort(e.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: %w", err))
	}
	if e.Poll < 0 || e.Timeout < 0 || e.ReportEvery < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if e.Poll > 0 && e.Poll.D() < 10*time.Millisecond {
		errs = append(errs, errors.New("poll: at least 10ms"))
	}
	return errors.Join(errs...)
}

// validHostPort checks host:port without resolving anything.
func validHostPort(s string) error {
	i := len(s) - 1
	for i >= 0 && s[i] != ':' {
		i--
	}
	if i <= 0 || i == len(s)-1 {
		return fmt.Errorf("%q: host:port", s)
	}
	port := 0
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%q: the port is a number", s)
		}
		port = port*10 + int(c-'0')
		if port > 65535 {
			return fmt.Errorf("%q: port out of range", s)
		}
	}
	for _, c := range s[:i] {
		if c <= ' ' || c == '/' || c == 0x7f {
			return fmt.Errorf("%q: bad host", s)
		}
	}
	return nil
}

// Validate checks a device as an operator submits it.
func (d *Device) Validate() error {
	var errs []error
	if err := ValidName(d.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if err := ValidName(d.Model); err != nil {
		errs = append(errs, fmt.Errorf("model: %w", err))
	}
	if err := ValidName(d.Node); err != nil {
		errs = append(errs, fmt.Errorf("node: %w", err))
	}
	if d.Modbus != nil {
		if err := d.Modbus.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("modbus: %w", err))
		}
	}
	return errors.Join(errs...)
}
