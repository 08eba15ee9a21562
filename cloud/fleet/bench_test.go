package fleet

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/cloud/api"
	"github.com/skybridge-mq/skybridge/cloud/ca"
	"github.com/skybridge-mq/skybridge/impl/env"
)

// BenchmarkHandleUp: the cloud applies one node's batch of 10 status
// records (decode, apply, one synced commit, acknowledgement). On an
// in-memory FS: the figure is the core's CPU, not the disk's fsync.
func BenchmarkHandleUp(b *testing.B) {
	rnd := env.NewRand(1)
	f, err := Open(Config{SecretKey: bytes.Repeat([]byte{1}, 32)}, rnd, vfs.NewMem(), "c", t0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	_, token, _ := f.CreateToken("n", nil, 0, t0)
	key, _, _ := ca.NewKey(rnd)
	csr, _ := ca.CSR(key, "n")
	if _, err := f.Activate(api.ActivateRequest{Token: token, CSR: csr}, t0); err != nil {
		b.Fatal(err)
	}
	f.Ready()
	status, _ := json.Marshal(api.Status{AppliedVersion: 1, DesiredVersion: 1, Apps: []api.AppStatus{{Name: "a", State: api.AppRunning}}})
	topic := api.NodeUpTopic("n")
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		up := api.Up{Node: "n", Epoch: 1, Floor: seq + 1, DesiredVersion: 1}
		for j := 0; j < 10; j++ {
			seq++
			up.Records = append(up.Records, api.Record{Seq: seq, At: t0, Kind: api.KindStatus, Body: status})
		}
		payload, _ := json.Marshal(&up)
		if err := f.HandleUp(topic, payload, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
		f.Ready()
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "records/s")
}
