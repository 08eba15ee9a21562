package api

import (
	"strings"
	"testing"
	"time"
)

func TestModbusPointValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pt   ModbusPoint
		prop Property
		err  string // a part of the error; "" for none
	}{
		{"scaled register", ModbusPoint{Table: "input", Type: "int16", Scale: 0.1}, Property{Type: PropFloat}, ""},
		{"writable holding", ModbusPoint{Table: "holding", Address: 65532, Type: "uint64"}, Property{Type: PropInt, Writable: true}, ""},
		{"coil", ModbusPoint{Table: "coil", Type: "bool"}, Property{Type: PropBool, Writable: true}, ""},
		{"string", ModbusPoint{Table: "holding", Type: "string", Registers: 8, ByteOrder: "little"}, Property{Type: PropString}, ""},
		{"unknown table", ModbusPoint{Table: "ram", Type: "int16"}, Property{Type: PropInt}, `table "ram"`},
		{"unknown type", ModbusPoint{Table: "input", Type: "int12"}, Property{Type: PropInt}, `type "int12"`},
		{"number in a coil", ModbusPoint{Table: "coil", Type: "int16"}, Property{Type: PropInt}, "a coil holds bits"},
		{"past the end", ModbusPoint{Table: "holding", Address: 65535, Type: "uint32"}, Property{Type: PropInt}, "past the last address"},
		{"string length", ModbusPoint{Table: "holding", Type: "string"}, Property{Type: PropString}, "1 to 125 registers"},
		{"registers on a number", ModbusPoint{Table: "holding", Type: "int16", Registers: 2}, Property{Type: PropInt}, "only for type string"},
		{"scale on a bool", ModbusPoint{Table: "holding", Type: "bool", Scale: 2}, Property{Type: PropBool}, "not for type bool"},
		{"byte order", ModbusPoint{Table: "holding", Type: "int32", ByteOrder: "middle"}, Property{Type: PropInt}, `byte_order "middle"`},
		{"word order", ModbusPoint{Table: "holding", Type: "int32", WordOrder: "mid"}, Property{Type: PropInt}, `word_order "mid"`},
		{"string for an int", ModbusPoint{Table: "holding", Type: "string", Registers: 1}, Property{Type: PropInt}, "cannot carry a property of type int"},
		{"number for a bool", ModbusPoint{Table: "holding", Type: "uint16"}, Property{Type: PropBool}, "cannot carry a property of type bool"},
		{"writable input", ModbusPoint{Table: "input", Type: "uint16"}, Property{Type: PropInt, Writable: true}, "needs a writable table"},
		{"writable discrete", ModbusPoint{Table: "discrete", Type: "bool"}, Property{Type: PropBool, Writable: true}, "needs a writable table"},
	}
	for _, tc := range tests {
		err := tc.pt.Validate(&tc.prop)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
		}
	}
}

func TestDeviceValidate(t *testing.T) {
	t.Parallel()
	ep := func(addr string, poll time.Duration) *ModbusEndpoint {
		return &ModbusEndpoint{Address: addr, Poll: Duration(poll)}
	}
	tests := []struct {
		d   Device
		err string
	}{
		{Device{Name: "d1", Model: "m", Node: "n"}, ""},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("10.0.0.7:502", time.Second)}, ""},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("[fe80::1]:502", 0)}, ""},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("meter.local:1502", 0)}, ""},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("10.0.0.7", 0)}, "host:port"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep(":502", 0)}, "host:port"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("h:70000", 0)}, "port out of range"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("h:5x", 0)}, "the port is a number"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("a b:502", 0)}, "bad host"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: ep("h:502", time.Millisecond)}, "at least 10ms"},
		{Device{Name: "d1", Model: "m", Node: "n", Modbus: &ModbusEndpoint{}}, "address: host:port"},
		{Device{Name: "D1", Model: "m", Node: ""}, "name"},
	}
	for _, tc := range tests {
		err := tc.d.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.d, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want one with %q", tc.d, err, tc.err)
		}
	}
	if got := (ModbusEndpoint{}).WithDefaults(); got.Poll.D() != 5*time.Second || got.Timeout.D() != 2*time.Second || got.ReportEvery.D() != 5*time.Minute {
		t.Errorf("defaults %+v", got)
	}
}
