package gateway

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// Decode turns a point's registers (as read: each the 16-bit value of the
// wire, high byte first) or its bit into the property's JSON value. regs
// must hold p.Count() registers for a register point; bit is used for a
// coil or discrete input. It never panics: a short read, a value that does
// not fit the property's type or a non-finite float is an error.
func Decode(p *api.ModbusPoint, prop *api.Property, regs []uint16, bit bool) (json.RawMessage, error) {
	if p.IsBit() {
		if p.Type != api.RawBool || prop.Type != api.PropBool {
			return nil, errors.New("a bit decodes to a bool only")
		}
		return json.RawMessage(strconv.FormatBool(bit)), nil
	}
	n := p.Count()
	if n < 1 || len(regs) < n {
		return nil, fmt.Errorf("%d registers read, the point spans %d", len(regs), n)
	}
	b := toBytes(p, regs[:n])
	switch p.Type {
	case api.RawBool:
		if prop.Type != api.PropBool {
			return nil, fmt.Errorf("type bool cannot carry a property of type %s", prop.Type)
		}
		return json.RawMessage(strconv.FormatBool(regs[0] != 0)), nil
	case api.RawString:
		if prop.Type != api.PropString {
			return nil, fmt.Errorf("type string cannot carry a property of type %s", prop.Type)
		}
		s := strings.TrimRight(string(b), "\x00 ")
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return nil, fmt.Errorf("byte %#x at %d: not ASCII", s[i], i)
			}
		}
		out, _ := json.Marshal(s) // a string: never fails
		return out, nil
	}
	if prop.Type != api.PropInt && prop.Type != api.PropFloat {
		return nil, fmt.Errorf("type %s cannot carry a property of type %s", p.Type, prop.Type)
	}
	scale, offset := p.ScaleOr1(), p.Offset
	exact := scale == 1 && offset == 0
	var i int64
	var f float64
	isInt := true
	switch p.Type {
	case api.RawInt16:
		i = int64(int16(binary.BigEndian.Uint16(b)))
	case api.RawUint16:
		i = int64(binary.BigEndian.Uint16(b))
	case api.RawInt32:
		i = int64(int32(binary.BigEndian.Uint32(b)))
	case api.RawUint32:
		i = int64(binary.BigEndian.Uint32(b))
	case api.RawInt64:
		i = int64(binary.BigEndian.Uint64(b))
	case api.RawUint64:
		u := binary.BigEndian.Uint64(b)
		if u > math.MaxInt64 {
			if exact && prop.Type == api.PropInt {
				return nil, fmt.Errorf("%d does not fit an int property", u)
			}
			isInt, f = false, float64(u)
		} else {
			i = int64(u)
		}
	case api.RawFloat32:
		f32 := math.Float32frombits(binary.BigEndian.Uint32(b))
		if exact && prop.Type == api.PropFloat {
			if math.IsNaN(float64(f32)) || math.IsInf(float64(f32), 0) {
				return nil, errors.New("not a finite number")
			}
			return json.RawMessage(strconv.FormatFloat(float64(f32), 'g', -1, 32)), nil
		}
		isInt, f = false, float64(f32)
	case api.RawFloat64:
		isInt, f = false, math.Float64frombits(binary.BigEndian.Uint64(b))
	default:
		return nil, fmt.Errorf("unknown type %q", p.Type)
	}
	if isInt && exact {
		if prop.Type == api.PropInt {
			return json.RawMessage(strconv.FormatInt(i, 10)), nil
		}
		return formatFloat(float64(i), false)
	}
	if isInt {
		f = float64(i)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("not a finite number")
	}
	v := f*scale + offset
	if prop.Type == api.PropInt {
		r := math.Round(v)
		if math.IsNaN(r) || r < -(1<<63) || r >= 1<<63 {
			return nil, fmt.Errorf("%g does not fit an int property", v)
		}
		return json.RawMessage(strconv.FormatInt(int64(r), 10)), nil
	}
	return formatFloat(v, !exact)
}

// formatFloat writes v; a scaled value with 15 significant digits, so
// that the float noise of a scale (3 × 0.1) does not reach the shadow.
func formatFloat(v float64, scaled bool) (json.RawMessage, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, errors.New("not a finite number")
	}
	if scaled {
		v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 15, 64), 64)
	}
	return json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64)), nil
}

// Encode turns a desired value (JSON) into what a write puts on the wire:
// the registers of a register point, or the bit of a coil. A value that
// does not fit the raw type after scaling is an error, never a wrap.
func Encode(p *api.ModbusPoint, prop *api.Property, v json.RawMessage) (regs []uint16, bit bool, err error) {
	if err := prop.CheckValue(v); err != nil {
		return nil, false, err
	}
	switch p.Type {
	case api.RawBool:
		var x bool
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, false, errors.New("want a bool")
		}
		if p.IsBit() {
			return nil, x, nil
		}
		if x {
			return []uint16{1}, false, nil
		}
		return []uint16{0}, false, nil
	case api.RawString:
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, false, errors.New("want a string")
		}
		if len(s) > 2*p.Registers {
			return nil, false, fmt.Errorf("%d bytes do not fit %d registers", len(s), p.Registers)
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 || s[i] == 0 {
				return nil, false, fmt.Errorf("byte %#x at %d: printable ASCII only", s[i], i)
			}
		}
		b := make([]byte, 2*p.Registers)
		copy(b, s)
		return fromBytes(p, b), false, nil
	}
	if p.IsBit() {
		return nil, false, errors.New("a bit holds a bool")
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, false, errors.New("want a number")
	}
	scale, offset := p.ScaleOr1(), p.Offset
	exact := scale == 1 && offset == 0
	raw := (f - offset) / scale
	b := make([]byte, 2*p.Count())
	intRange := func(lo, hi float64) (float64, error) {
		r := math.Round(raw)
		if math.IsNaN(r) || r < lo || r > hi {
			return 0, fmt.Errorf("%s gives %g, out of the range of %s", v, raw, p.Type)
		}
		return r, nil
	}
	switch p.Type {
	case api.RawInt16, api.RawUint16, api.RawInt32, api.RawUint32:
		var lo, hi float64
		switch p.Type {
		case api.RawInt16:
			lo, hi = math.MinInt16, math.MaxInt16
		case api.RawUint16:
			lo, hi = 0, math.MaxUint16
		case api.RawInt32:
			lo, hi = math.MinInt32, math.MaxInt32
		default:
			lo, hi = 0, math.MaxUint32
		}
		r, err := intRange(lo, hi)
		if err != nil {
			return nil, false, err
		}
		if p.Count() == 1 {
			binary.BigEndian.PutUint16(b, uint16(int64(r)))
		} else {
			binary.BigEndian.PutUint32(b, uint32(int64(r)))
		}
	case api.RawInt64, api.RawUint64:
		var i int64
		if exact && json.Unmarshal(v, &i) == nil { // exact integers beyond 2^53
			if p.Type == api.RawUint64 && i < 0 {
				return nil, false, fmt.Errorf("%s is out of the range of uint64", v)
			}
			binary.BigEndian.PutUint64(b, uint64(i))
			break
		}
		lo, hi := -9.223372036854775e18, 9.223372036854775e18
		if p.Type == api.RawUint64 {
			lo, hi = 0, 1.8446744073709550e19
		}
		r, err := intRange(lo, hi)
		if err != nil {
			return nil, false, err
		}
		if p.Type == api.RawUint64 {
			binary.BigEndian.PutUint64(b, uint64(r))
		} else {
			binary.BigEndian.PutUint64(b, uint64(int64(r)))
		}
	case api.RawFloat32:
		if math.Abs(raw) > math.MaxFloat32 || math.IsNaN(raw) {
			return nil, false, fmt.Errorf("%s gives %g, out of the range of float32", v, raw)
		}
		binary.BigEndian.PutUint32(b, math.Float32bits(float32(raw)))
	case api.RawFloat64:
		if math.IsNaN(raw) || math.IsInf(raw, 0) {
			return nil, false, fmt.Errorf("%s gives %g", v, raw)
		}
		binary.BigEndian.PutUint64(b, math.Float64bits(raw))
	default:
		return nil, false, fmt.Errorf("unknown type %q", p.Type)
	}
	return fromBytes(p, b), false, nil
}

// toBytes lays a point's registers out as one big-endian value: the
// words in significance order (undoing the word order) and each word's
// bytes high first (undoing the byte order). A string keeps the
// registers' order; only its byte order applies.
func toBytes(p *api.ModbusPoint, regs []uint16) []byte {
	n := len(regs)
	b := make([]byte, 2*n)
	for i, r := range regs {
		j := i
		if p.WordOrder == api.LowWord && p.Type != api.RawString {
			j = n - 1 - i
		}
		if p.ByteOrder == api.LittleEndian {
			r = r>>8 | r<<8
		}
		binary.BigEndian.PutUint16(b[2*j:], r)
	}
	return b
}

// fromBytes is toBytes's inverse.
func fromBytes(p *api.ModbusPoint, b []byte) []uint16 {
	n := len(b) / 2
	regs := make([]uint16, n)
	for i := range regs {
		j := i
		if p.WordOrder == api.LowWord && p.Type != api.RawString {
			j = n - 1 - i
		}
		r := binary.BigEndian.Uint16(b[2*j:])
		if p.ByteOrder == api.LittleEndian {
			r = r>>8 | r<<8
		}
		regs[i] = r
	}
	return regs
}
