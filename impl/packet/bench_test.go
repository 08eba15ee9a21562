package packet

import (
	"bytes"
	"testing"
)

func benchPublish(size int) *Publish {
	return &Publish{QoS: QoS1, PacketID: 42, Topic: []byte("sensors/building-7/floor-3/temperature"),
		Payload: bytes.Repeat([]byte{'x'}, size)}
}

// repeatReader serves the same bytes forever without allocating.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

func benchDecode(b *testing.B, p Packet, v Version) {
	enc, err := Encode(p, v)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReader(&repeatReader{b: enc}, 64<<10)
	dst := New(p.Type())
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h, body, err := r.ReadPacket()
		if err != nil {
			b.Fatal(err)
		}
		if err := dst.Decode(h, body, v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, p Packet, v Version) {
	buf := make([]byte, 0, p.Size(v))
	b.SetBytes(int64(p.Size(v)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var err error
		if buf, err = p.Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchConnect() *Connect {
	return &Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: []byte("device-000123"),
		UsernameFlag: true, Username: []byte("tenant/user"), PasswordFlag: true, Password: []byte("secret"),
		Properties: present(Properties{SessionExpiry: 3600, ReceiveMaximum: 100}, PropSessionExpiry, PropReceiveMaximum)}
}

func benchSubscribe() *Subscribe {
	return &Subscribe{PacketID: 7, Subscriptions: []Subscription{
		{Filter: []byte("a/+/c"), QoS: QoS1}, {Filter: []byte("sensors/#"), QoS: QoS2}}}
}

func BenchmarkDecodePublish16B(b *testing.B)    { benchDecode(b, benchPublish(16), V311) }
func BenchmarkDecodePublish1KiB(b *testing.B)   { benchDecode(b, benchPublish(1024), V311) }
func BenchmarkDecodePublish16Bv5(b *testing.B)  { benchDecode(b, benchPublish(16), V5) }
func BenchmarkDecodePublish1KiBv5(b *testing.B) { benchDecode(b, benchPublish(1024), V5) }
func BenchmarkEncodePublish16B(b *testing.B)    { benchEncode(b, benchPublish(16), V311) }
func BenchmarkEncodePublish1KiB(b *testing.B)   { benchEncode(b, benchPublish(1024), V311) }
func BenchmarkEncodePublish16Bv5(b *testing.B)  { benchEncode(b, benchPublish(16), V5) }
func BenchmarkEncodePublish1KiBv5(b *testing.B) { benchEncode(b, benchPublish(1024), V5) }
func BenchmarkDecodeConnect(b *testing.B)       { benchDecode(b, benchConnect(), V5) }
func BenchmarkEncodeConnect(b *testing.B)       { benchEncode(b, benchConnect(), V5) }
func BenchmarkDecodeSubscribe(b *testing.B)     { benchDecode(b, benchSubscribe(), V5) }
func BenchmarkEncodeSubscribe(b *testing.B)     { benchEncode(b, benchSubscribe(), V5) }

// TestPublishPathAllocations pins the zero-allocation promise of the
// PUBLISH hot path, so that a regression fails the build, not only a
// benchmark nobody reads.
func TestPublishPathAllocations(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		for _, size := range []int{16, 1024} {
			p := benchPublish(size)
			if v == V5 {
				p.Properties.User = []UserProperty{{[]byte("k"), []byte("v")}}
				p.Properties.MessageExpiry = 30
				p.Properties.Set(PropMessageExpiry)
			}
			enc, _ := Encode(p, v)
			r := NewReader(&repeatReader{b: enc}, 64<<10)
			var dst Publish
			buf := make([]byte, 0, 2048)
			step := func() {
				h, body, err := r.ReadPacket()
				if err != nil {
					t.Fatal(err)
				}
				if err := dst.Decode(h, body, v); err != nil {
					t.Fatal(err)
				}
				if buf, err = dst.Append(buf[:0], v); err != nil {
					t.Fatal(err)
				}
			}
			step() // let reused slices grow once
			if n := testing.AllocsPerRun(1000, step); n != 0 {
				t.Errorf("v%s %dB: %v allocations per decode+encode, want 0", v, size, n)
			}
		}
	}
}
