package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/impl/env"
)

// BenchmarkAppendRecord: a node appends a device report to its outbox
// (encode, bound check, one synced commit). In-memory FS: the core's CPU.
func BenchmarkAppendRecord(b *testing.B) {
	a, err := New(Config{}, env.NewRand(1), vfs.NewMem(), "edge", t0)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	a.id = &identity{Node: "n"} // registered, as after activation
	r := api.DeviceReport{Device: "d", Props: map[string]json.RawMessage{"temp": json.RawMessage("21")}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.DeviceReported(r, t0.Add(time.Duration(i)*time.Millisecond))
		a.Ready()
	}
}
