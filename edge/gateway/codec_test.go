package gateway

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	f32 := math.Float32bits(21.5)
	pi := math.Float64bits(3.25)
	tests := []struct {
		name string
		pt   api.ModbusPoint
		typ  api.PropertyType
		regs []uint16
		bit  bool
		want string
		err  bool
	}{
		{name: "uint16", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", regs: []uint16{0xfffe}, want: "65534"},
		{name: "int16", pt: api.ModbusPoint{Table: "holding", Type: "int16"}, typ: "int", regs: []uint16{0xfffe}, want: "-2"},
		{name: "int16 scaled to float", pt: api.ModbusPoint{Table: "input", Type: "int16", Scale: 0.1}, typ: "float", regs: []uint16{215}, want: "21.5"},
		{name: "scale noise trimmed", pt: api.ModbusPoint{Table: "input", Type: "uint16", Scale: 0.1}, typ: "float", regs: []uint16{3}, want: "0.3"},
		{name: "offset", pt: api.ModbusPoint{Table: "input", Type: "int16", Scale: 0.5, Offset: -40}, typ: "float", regs: []uint16{100}, want: "10"},
		{name: "scaled int rounds", pt: api.ModbusPoint{Table: "input", Type: "uint16", Scale: 0.1}, typ: "int", regs: []uint16{216}, want: "22"},
		{name: "uint16 little endian", pt: api.ModbusPoint{Table: "holding", Type: "uint16", ByteOrder: "little"}, typ: "int", regs: []uint16{0x3412}, want: "4660"},
		{name: "int32 high word first", pt: api.ModbusPoint{Table: "holding", Type: "int32"}, typ: "int", regs: []uint16{0x0001, 0x0002}, want: "65538"},
		{name: "int32 low word first", pt: api.ModbusPoint{Table: "holding", Type: "int32", WordOrder: "low"}, typ: "int", regs: []uint16{0x0002, 0x0001}, want: "65538"},
		{name: "int32 negative", pt: api.ModbusPoint{Table: "holding", Type: "int32"}, typ: "int", regs: []uint16{0xffff, 0xfffd}, want: "-3"},
		{name: "uint32 both swapped", pt: api.ModbusPoint{Table: "holding", Type: "uint32", WordOrder: "low", ByteOrder: "little"}, typ: "int", regs: []uint16{0x0200, 0x0100}, want: "65538"},
		{name: "float32", pt: api.ModbusPoint{Table: "input", Type: "float32"}, typ: "float", regs: []uint16{uint16(f32 >> 16), uint16(f32)}, want: "21.5"},
		{name: "float32 shortest", pt: api.ModbusPoint{Table: "input", Type: "float32"}, typ: "float", regs: []uint16{0x3dcc, 0xcccd}, want: "0.1"},
		{name: "float32 NaN", pt: api.ModbusPoint{Table: "input", Type: "float32"}, typ: "float", regs: []uint16{0x7fc0, 0}, err: true},
		{name: "float32 inf scaled", pt: api.ModbusPoint{Table: "input", Type: "float32", Scale: 2}, typ: "float", regs: []uint16{0x7f80, 0}, err: true},
		{name: "float64", pt: api.ModbusPoint{Table: "input", Type: "float64"}, typ: "float", regs: []uint16{uint16(pi >> 48), uint16(pi >> 32), uint16(pi >> 16), uint16(pi)}, want: "3.25"},
		{name: "uint64 too big for int", pt: api.ModbusPoint{Table: "input", Type: "uint64"}, typ: "int", regs: []uint16{0x8000, 0, 0, 0}, err: true},
		{name: "uint64 big as float", pt: api.ModbusPoint{Table: "input", Type: "uint64"}, typ: "float", regs: []uint16{0x8000, 0, 0, 0}, want: "9.223372036854776e+18"},
		{name: "int64", pt: api.ModbusPoint{Table: "input", Type: "int64"}, typ: "int", regs: []uint16{0xffff, 0xffff, 0xffff, 0xfffe}, want: "-2"},
		{name: "int into float property", pt: api.ModbusPoint{Table: "input", Type: "uint16"}, typ: "float", regs: []uint16{7}, want: "7"},
		{name: "short read", pt: api.ModbusPoint{Table: "input", Type: "uint32"}, typ: "int", regs: []uint16{1}, err: true},
		{name: "coil", pt: api.ModbusPoint{Table: "coil", Type: "bool"}, typ: "bool", bit: true, want: "true"},
		{name: "register as bool", pt: api.ModbusPoint{Table: "holding", Type: "bool"}, typ: "bool", regs: []uint16{2}, want: "true"},
		{name: "string", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 3}, typ: "string", regs: []uint16{0x4142, 0x4300, 0}, want: `"ABC"`},
		{name: "string little endian", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 2, ByteOrder: "little"}, typ: "string", regs: []uint16{0x4241, 0x2043}, want: `"ABC"`},
		{name: "string not ASCII", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 1}, typ: "string", regs: []uint16{0xff41}, err: true},
		{name: "string quoted", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 1}, typ: "string", regs: []uint16{0x2241}, want: `"\"A"`},
		{name: "type mismatch", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "bool", regs: []uint16{1}, err: true},
		{name: "int overflow after scale", pt: api.ModbusPoint{Table: "holding", Type: "int64", Scale: 1e10}, typ: "int", regs: []uint16{0x7fff, 0xffff, 0xffff, 0xffff}, err: true},
	}
	for _, tc := range tests {
		prop := api.Property{Name: "p", Type: tc.typ}
		got, err := Decode(&tc.pt, &prop, tc.regs, tc.bit)
		if tc.err {
			if err == nil {
				t.Errorf("%s: decoded %s, want an error", tc.name, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pt   api.ModbusPoint
		typ  api.PropertyType
		v    string
		regs []uint16
		bit  bool
		err  bool
	}{
		{name: "uint16", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", v: "65535", regs: []uint16{0xffff}},
		{name: "uint16 out of range", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", v: "65536", err: true},
		{name: "uint16 negative", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", v: "-1", err: true},
		{name: "int16 negative", pt: api.ModbusPoint{Table: "holding", Type: "int16"}, typ: "int", v: "-2", regs: []uint16{0xfffe}},
		{name: "scaled", pt: api.ModbusPoint{Table: "holding", Type: "int16", Scale: 0.1}, typ: "float", v: "21.5", regs: []uint16{215}},
		{name: "scaled with offset", pt: api.ModbusPoint{Table: "holding", Type: "int16", Scale: 0.5, Offset: -40}, typ: "float", v: "10", regs: []uint16{100}},
		{name: "scaled out of range", pt: api.ModbusPoint{Table: "holding", Type: "int16", Scale: 0.1}, typ: "float", v: "4000", err: true},
		{name: "int32 low word first", pt: api.ModbusPoint{Table: "holding", Type: "int32", WordOrder: "low"}, typ: "int", v: "65538", regs: []uint16{2, 1}},
		{name: "uint32 little endian", pt: api.ModbusPoint{Table: "holding", Type: "uint32", ByteOrder: "little"}, typ: "int", v: "65538", regs: []uint16{0x0100, 0x0200}},
		{name: "int64 exact beyond 2^53", pt: api.ModbusPoint{Table: "holding", Type: "int64"}, typ: "int", v: "9007199254740993", regs: []uint16{0x0020, 0, 0, 1}},
		{name: "uint64 negative", pt: api.ModbusPoint{Table: "holding", Type: "uint64"}, typ: "int", v: "-1", err: true},
		{name: "float32", pt: api.ModbusPoint{Table: "holding", Type: "float32"}, typ: "float", v: "21.5", regs: []uint16{0x41ac, 0}},
		{name: "float32 too big", pt: api.ModbusPoint{Table: "holding", Type: "float32"}, typ: "float", v: "1e300", err: true},
		{name: "coil", pt: api.ModbusPoint{Table: "coil", Type: "bool"}, typ: "bool", v: "true", bit: true},
		{name: "register bool", pt: api.ModbusPoint{Table: "holding", Type: "bool"}, typ: "bool", v: "true", regs: []uint16{1}},
		{name: "string padded", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 2}, typ: "string", v: `"ABC"`, regs: []uint16{0x4142, 0x4300}},
		{name: "string too long", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 1}, typ: "string", v: `"ABC"`, err: true},
		{name: "string not ASCII", pt: api.ModbusPoint{Table: "holding", Type: "string", Registers: 2}, typ: "string", v: `"é"`, err: true},
		{name: "wrong JSON type", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", v: `"1"`, err: true},
		{name: "int property given a fraction", pt: api.ModbusPoint{Table: "holding", Type: "uint16"}, typ: "int", v: "1.5", err: true},
	}
	for _, tc := range tests {
		prop := api.Property{Name: "p", Type: tc.typ, Writable: true}
		regs, bit, err := Encode(&tc.pt, &prop, json.RawMessage(tc.v))
		if tc.err {
			if err == nil {
				t.Errorf("%s: encoded %v %v, want an error", tc.name, regs, bit)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.regs, regs); diff != "" || bit != tc.bit {
			t.Errorf("%s: bit %v (want %v), registers (-want +got):\n%s", tc.name, bit, tc.bit, diff)
		}
		// What is written reads back as the same value.
		back, err := Decode(&tc.pt, &prop, regs, bit)
		if err != nil || !sameNumber(t, string(back), tc.v) {
			t.Errorf("%s: %s reads back as %s (%v)", tc.name, tc.v, back, err)
		}
	}
}

func sameNumber(t *testing.T, a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return cmp.Equal(x, y)
}

// FuzzDecode: any point, any registers: Decode never panics, answers
// valid JSON of the property's type, and an integer it decodes exactly
// (no scale) encodes back to the same registers.
func FuzzDecode(f *testing.F) {
	f.Add("holding", "int32", uint16(0), 0, 1.0, 0.0, "big", "low", "int", []byte{0, 1, 0, 2})
	f.Add("input", "float32", uint16(7), 0, 0.1, -40.0, "little", "high", "float", []byte{0x41, 0xac, 0, 0})
	f.Add("holding", "string", uint16(100), 3, 0.0, 0.0, "big", "high", "string", []byte("ABC\x00\x00\x00"))
	f.Add("coil", "bool", uint16(65535), 0, 0.0, 0.0, "", "", "bool", []byte{1})
	f.Add("holding", "uint64", uint16(65532), 0, 1.0, 0.0, "big", "high", "int", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, table, typ string, addr uint16, nregs int, scale, offset float64, bo, wo, ptype string, raw []byte) {
		pt := api.ModbusPoint{Table: table, Type: typ, Address: addr, Registers: nregs, Scale: scale, Offset: offset, ByteOrder: bo, WordOrder: wo}
		prop := api.Property{Name: "p", Type: api.PropertyType(ptype), Writable: true, Modbus: &pt}
		regs := make([]uint16, len(raw)/2)
		for i := range regs {
			regs[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
		}
		bit := len(raw) > 0 && raw[0]&1 == 1
		v, err := Decode(&pt, &prop, regs, bit)
		if err != nil {
			return
		}
		if pt.Validate(&prop) != nil {
			return // the gateway refuses such points before decoding
		}
		if err := prop.CheckValue(v); err != nil {
			t.Fatalf("decoded %s: %v", v, err)
		}
		exact := pt.ScaleOr1() == 1 && pt.Offset == 0
		if !exact || pt.IsBit() || prop.Type != api.PropInt || typ == api.RawBool {
			return
		}
		back, _, err := Encode(&pt, &prop, v)
		if err != nil {
			t.Fatalf("%s decoded from %v does not encode: %v", v, regs, err)
		}
		if !cmp.Equal(back, regs[:pt.Count()]) {
			t.Fatalf("%v decodes to %s, which encodes to %v", regs[:pt.Count()], v, back)
		}
	})
}

// FuzzEncode: any desired value for any point: Encode never panics, and
// what it writes reads back (Decode) as a value of the property's type —
// the same value for integers written without scale.
func FuzzEncode(f *testing.F) {
	f.Add("holding", "int16", 0, 1.0, 0.0, "big", "high", "int", []byte("-2"))
	f.Add("holding", "float32", 0, 0.1, -40.0, "little", "low", "float", []byte("21.5"))
	f.Add("holding", "string", 4, 0.0, 0.0, "little", "", "string", []byte(`"ABC"`))
	f.Add("coil", "bool", 0, 0.0, 0.0, "", "", "bool", []byte("true"))
	f.Add("holding", "uint64", 0, 1.0, 0.0, "big", "low", "int", []byte("18446744073709551615"))
	f.Fuzz(func(t *testing.T, table, typ string, nregs int, scale, offset float64, bo, wo, ptype string, value []byte) {
		pt := api.ModbusPoint{Table: table, Type: typ, Registers: nregs, Scale: scale, Offset: offset, ByteOrder: bo, WordOrder: wo}
		prop := api.Property{Name: "p", Type: api.PropertyType(ptype), Writable: true, Modbus: &pt}
		if pt.Validate(&prop) != nil {
			return // the cloud and the gateway refuse such points
		}
		regs, bit, err := Encode(&pt, &prop, json.RawMessage(value))
		if err != nil {
			return
		}
		if !pt.IsBit() && len(regs) != pt.Count() {
			t.Fatalf("%s encodes to %d registers, the point spans %d", value, len(regs), pt.Count())
		}
		back, err := Decode(&pt, &prop, regs, bit)
		if err != nil {
			t.Fatalf("%s encodes to %v, which does not decode: %v", value, regs, err)
		}
		if err := prop.CheckValue(back); err != nil {
			t.Fatalf("%s reads back as %s: %v", value, back, err)
		}
		if prop.Type == api.PropInt && pt.ScaleOr1() == 1 && pt.Offset == 0 && typ != api.RawFloat32 && typ != api.RawFloat64 {
			if !sameNumber(t, string(back), string(value)) {
				t.Fatalf("%s reads back as %s", value, back)
			}
		}
	})
}
